package authn

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// The factor kinds factors names are the policy's, so a proof's kind
// reads the same on both sides.
func TestFactorKindsMatchPolicy(t *testing.T) {
	for _, p := range [][2]string{{factors.KindWebAuthn, policy.FactorWebAuthn}, {factors.KindTOTP, policy.FactorTOTP},
		{factors.KindEmail, policy.FactorEmail}, {factors.KindRecovery, policy.FactorRecovery}} {
		if p[0] != p[1] {
			t.Errorf("factors kind %q, policy %q", p[0], p[1])
		}
	}
}

func TestStrengthOrder(t *testing.T) {
	order := []factors.Strength{
		factors.StrengthOf("password", false),
		factors.StrengthOf(factors.KindEmail, false),
		factors.StrengthOf(factors.KindTOTP, false),
		factors.StrengthOf(factors.KindWebAuthn, false),
		factors.StrengthOf(factors.KindWebAuthn, true),
	}
	if !slices.IsSorted(order) || slices.Compact(slices.Clone(order))[4] != factors.StrengthHardware || len(slices.Compact(slices.Clone(order))) != 5 {
		t.Fatalf("order %v: want none < email < totp < webauthn < attested", order)
	}
	// email = recovery = SMS; attestation means nothing outside WebAuthn.
	for _, k := range []string{factors.KindRecovery, factors.KindSMS} {
		for _, att := range []bool{false, true} {
			if factors.StrengthOf(k, att) != factors.StrengthCode {
				t.Errorf("%s (attested=%v) = %v, want code", k, att, factors.StrengthOf(k, att))
			}
		}
	}
	if factors.StrengthOf(factors.KindTOTP, true) != factors.StrengthApp {
		t.Error("an attested flag raised TOTP")
	}
	for s := factors.StrengthNone; s <= factors.StrengthHardware; s++ {
		if got, ok := factors.ParseStrength(s.String()); !ok || got != s {
			t.Errorf("ParseStrength(%q) = %v %v", s, got, ok)
		}
	}
	if _, ok := factors.ParseStrength("HARDWARE"); ok {
		t.Error("ParseStrength accepted a spelling String never gives")
	}
	if got := factors.KindsReaching(factors.StrengthApp); !slices.Equal(got, []string{"webauthn", "totp"}) {
		t.Errorf("KindsReaching(totp) = %v", got)
	}
	if got := factors.KindsReaching(factors.StrengthHardware); !slices.Equal(got, []string{"webauthn"}) {
		t.Errorf("KindsReaching(hardware) = %v", got)
	}
}

// The rules of change, as a table: what each fresh proof may do to an
// account holding each set of factors.
func TestChangeNeedsProofAsStrongAsWhatChanges(t *testing.T) {
	hw := heldCredential{factors.Credential{ID: "hw", Kind: "webauthn"}, factors.StrengthHardware}
	key := heldCredential{factors.Credential{ID: "key", Kind: "webauthn"}, factors.StrengthKey}
	app := heldCredential{factors.Credential{ID: "app", Kind: "totp"}, factors.StrengthApp}
	rec := heldCredential{factors.Credential{ID: "rec", Kind: "recovery"}, factors.StrengthCode}
	var (
		password = freshProof{}
		email    = freshProof{best: factors.StrengthCode}
		grant    = freshProof{emailGrant: true}
		link     = freshProof{link: true}
		totp     = freshProof{best: factors.StrengthApp}
		keyProof = freshProof{best: factors.StrengthKey}
		hwProof  = freshProof{best: factors.StrengthHardware}
	)
	cases := []struct {
		name   string
		f      freshProof
		creds  []heldCredential
		add    bool
		touch  []string // credential IDs it may remove or rename
		forbid []string
	}{
		{"password alone, no factor", password, nil, false, nil, nil},
		{"email sign-in code, no factor", email, nil, true, nil, nil},
		{"email enrolment grant, no factor", grant, nil, true, nil, nil},
		{"email enrolment grant once a factor exists", grant, []heldCredential{rec}, false, nil, []string{"rec"}},
		{"admin link adds, never removes", link, []heldCredential{hw, app}, true, nil, []string{"hw", "app"}},
		{"email code vs app", email, []heldCredential{app, rec}, false, []string{"rec"}, []string{"app"}},
		{"recovery code vs key", email, []heldCredential{key, rec}, false, []string{"rec"}, []string{"key"}},
		{"app vs key", totp, []heldCredential{key, app}, false, []string{"app"}, []string{"key"}},
		{"app alone", totp, []heldCredential{app}, true, []string{"app"}, nil},
		{"unattested key vs attested key", keyProof, []heldCredential{hw, key, app}, false, []string{"key", "app"}, []string{"hw"}},
		{"attested key changes everything", hwProof, []heldCredential{hw, key, app, rec}, true, []string{"hw", "key", "app", "rec"}, nil},
		{"email code with only recovery codes", email, []heldCredential{rec}, true, []string{"rec"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := mayAdd(tc.f, tc.creds); got != tc.add {
				t.Errorf("mayAdd = %v, want %v", got, tc.add)
			}
			for _, c := range tc.creds {
				want := slices.Contains(tc.touch, c.ID)
				if slices.Contains(tc.forbid, c.ID) && want {
					t.Fatal("bad case")
				}
				if got := mayTouch(tc.f, c); got != want {
					t.Errorf("mayTouch(%s) = %v, want %v", c.ID, got, want)
				}
			}
		})
	}
}

// Which session proofs count, and for how long: only second factors within
// the elevation window and grants within theirs; a remembered device, the
// password and anything stale never do.
func TestFreshProofReadsOnlyFreshSecondFactors(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &MFA{o: MFAOptions{ElevationWindow: 5 * time.Minute, EnrollGrantWindow: 15 * time.Minute, Now: func() time.Time { return now }}}
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	cases := []struct {
		name   string
		proofs []policy.Proof
		want   freshProof
	}{
		{"password and device", []policy.Proof{{Kind: policy.FactorPassword, At: now}, {Kind: ProofDevice, At: now}}, freshProof{}},
		{"fresh attested key", []policy.Proof{{Kind: policy.FactorWebAuthn, At: at(time.Minute), Attested: true}}, freshProof{best: factors.StrengthHardware}},
		{"stale key, fresh email", []policy.Proof{{Kind: policy.FactorWebAuthn, At: at(6 * time.Minute)}, {Kind: policy.FactorEmail, At: now}}, freshProof{best: factors.StrengthCode}},
		{"link within its window", []policy.Proof{{Kind: ProofEnrollment, Ref: "link", At: at(14 * time.Minute)}}, freshProof{link: true}},
		{"email grant past its window", []policy.Proof{{Kind: ProofEnrollment, Ref: "email", At: at(16 * time.Minute)}}, freshProof{}},
		{"strongest wins", []policy.Proof{{Kind: policy.FactorTOTP, At: now}, {Kind: policy.FactorRecovery, At: now}}, freshProof{best: factors.StrengthApp}},
	}
	for _, tc := range cases {
		if got := m.fresh(&Session{Proofs: tc.proofs}); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestWeakProofErrorIsElevationRequired(t *testing.T) {
	var err error = &WeakProofError{Action: ChangeAdd, Need: factors.StrengthKey, Have: factors.StrengthCode, Kinds: []string{"webauthn"}}
	var wp *WeakProofError
	if !errors.Is(err, ErrElevationRequired) || !errors.As(err, &wp) || wp.Need != factors.StrengthKey {
		t.Fatalf("%v", err)
	}
	if err.Error() != "authn: to add a second factor, confirm with a webauthn factor first (this session has code)" {
		t.Errorf("message %q", err.Error())
	}
}
