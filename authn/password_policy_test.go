package authn

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPasswordPolicy(t *testing.T) {
	pol := PasswordPolicy{MinLength: 12}
	tests := []struct {
		name, user, email, pw string
		codes                 []string // nil = accepted
	}{
		{"good passphrase", "alice", "alice@example.com", "plum-lantern-orbit-42", nil},
		{"good random", "alice", "alice@example.com", "9xK#mq!2vLp&Zr", nil},
		{"good unicode", "alice", "", "zwölf Äpfel im Schnee", nil},
		{"short", "alice", "", "xQ9#mv2!", []string{PolicyCodeTooShort}},
		{"short and common", "alice", "", "password", []string{PolicyCodeTooShort, PolicyCodeCommon}},
		{"common long", "alice", "", "password1234", []string{PolicyCodeCommon}},
		{"common any case", "alice", "", "IloveYou1234", []string{PolicyCodeCommon}},
		{"common with affixes", "alice", "", "!!Summer2024!!", []string{PolicyCodeCommon}},
		{"common leet", "alice", "", "P@ssw0rd2024!", []string{PolicyCodeCommon}},
		{"common separated", "alice", "", "pass-word-2024", []string{PolicyCodeCommon}},
		{"famous passphrase", "alice", "", "correct horse battery staple", []string{PolicyCodeCommon}},
		{"repetition", "alice", "", "abcabcabcabc", []string{PolicyCodeCommon}},
		{"one character", "alice", "", "zzzzzzzzzzzzzzzz", []string{PolicyCodeCommon}},
		{"digit sequence", "alice", "", "123456789012", []string{PolicyCodeCommon}},
		{"letter sequence", "alice", "", "lkjihgfedcba", []string{PolicyCodeCommon}},
		{"keyboard walk", "alice", "", "qwertyuiopasdf", []string{PolicyCodeCommon}},
		{"keyboard walk reversed", "alice", "", "0987654321!@#", []string{PolicyCodeCommon}},
		{"symbols around a sequence", "alice", "", "!@#123456789", []string{PolicyCodeCommon}},
		{"symbols around a walk", "alice", "", "***asdfghjkl***", []string{PolicyCodeCommon}},
		{"keyboard column", "alice", "", "1qaz2wsx3edc4rfv", []string{PolicyCodeCommon}},
		{"contains username", "margarethe", "", "Margarethe-likes-tea", []string{PolicyCodeContainsUsername}},
		{"contains email local part", "mh", "m.hamilton@example.com", "m.hamilton-plum-orbit", []string{PolicyCodeContainsEmail}},
		{"short username ignored", "al", "", "totally-random-walnut", nil},
		{"too long", "alice", "", strings.Repeat("plum-lantern ", 100), []string{PolicyCodeTooLong}},
		{"invalid utf8", "alice", "", "plum-lantern-\xff\xfe-orbit", []string{PolicyCodeInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pol.Check(tt.user, tt.email, tt.pw)
			if tt.codes == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var perr *PasswordPolicyError
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v, want *PasswordPolicyError", err)
			}
			if !slices.Equal(perr.Codes, tt.codes) || len(perr.Reasons) != len(perr.Codes) {
				t.Fatalf("codes %v (reasons %q), want %v", perr.Codes, perr.Reasons, tt.codes)
			}
		})
	}
}

func TestPasswordPolicyReasons(t *testing.T) {
	err := PasswordPolicy{}.Check("margarethe", "", "margarethe")
	var perr *PasswordPolicyError
	if !errors.As(err, &perr) {
		t.Fatal(err)
	}
	want := []string{"at least 12 characters", "must not contain the username"}
	if !slices.Equal(perr.Reasons, want) {
		t.Fatalf("reasons %q, want %q", perr.Reasons, want)
	}
	if err := (PasswordPolicy{MinLength: 20}).Check("", "", "plum-lantern-orbit"); err == nil || !strings.Contains(err.Error(), "at least 20 characters") {
		t.Fatalf("MinLength 20: %v", err)
	}
}

// The embedded list must stay usable by inCommonList: sorted, unique,
// lower-case, one entry a line, newline-terminated, a few thousand long.
func TestCommonPasswordList(t *testing.T) {
	if !strings.HasSuffix(commonPasswords, "\n") {
		t.Fatal("list does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(commonPasswords, "\n"), "\n")
	if len(lines) < 2000 {
		t.Fatalf("only %d entries", len(lines))
	}
	for i, l := range lines {
		if l == "" || l != strings.ToLower(strings.TrimSpace(l)) {
			t.Fatalf("line %d %q: empty, padded or not lower-case", i+1, l)
		}
		if i > 0 && lines[i-1] >= l {
			t.Fatalf("line %d %q: not sorted or duplicate", i+1, l)
		}
	}
	for _, pw := range []string{"123456", "password", "qwerty", "iloveyou", "dragon", "monkey"} {
		if !inCommonList(pw) {
			t.Errorf("%q missing", pw)
		}
	}
	if inCommonList("iloveyo") || inCommonList("") {
		t.Error("prefix or empty string matched")
	}
}
