package authn

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

func TestParseStrength(t *testing.T) {
	for s := factors.StrengthNone; s <= factors.StrengthHardware; s++ {
		if got, ok := factors.ParseStrength(s.String()); !ok || got != s {
			t.Errorf("ParseStrength(%q) = %v %v", s, got, ok)
		}
	}
	if _, ok := factors.ParseStrength("HARDWARE"); ok {
		t.Error("ParseStrength accepted a spelling String never gives")
	}
}

// The rules of change, as a table: what each fresh proof may do to an
// account holding each set of factors.
func TestChangeNeedsProofAsStrongAsWhatChanges(t *testing.T) {
	hw := heldCredential{Credential: factors.Credential{ID: "hw", Kind: "webauthn"}, Strength: factors.StrengthHardware}
	key := heldCredential{Credential: factors.Credential{ID: "key", Kind: "webauthn"}, Strength: factors.StrengthKey}
	app := heldCredential{Credential: factors.Credential{ID: "app", Kind: "totp"}, Strength: factors.StrengthApp}
	rec := heldCredential{Credential: factors.Credential{ID: "rec", Kind: "recovery"}, Strength: factors.StrengthCode, backup: true}
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
	set := factors.Set{strengthOnly{"webauthn", factors.StrengthKey, true}, strengthOnly{"totp", factors.StrengthApp, false},
		strengthOnly{"email", factors.StrengthCode, false}, strengthOnly{"recovery", factors.StrengthCode, false}}
	m := &MFA{o: MFAOptions{Factors: set, ElevationWindow: 5 * time.Minute, EnrollGrantWindow: 15 * time.Minute, Now: func() time.Time { return now }}}
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

// strengthOnly is a factor reduced to its kind and strength: what the
// freshness rules read. The real factors' strengths are checked where they
// are registered (cmd/keygate).
type strengthOnly struct {
	kind        string
	strength    factors.Strength
	attestation bool
}

func (f strengthOnly) Kind() string { return f.kind }
func (f strengthOnly) Strength(attested bool) factors.Strength {
	if attested && f.attestation {
		return f.strength + 1
	}
	return f.strength
}
func (f strengthOnly) Shape() factors.Shape { return factors.ShapeCode }
func (f strengthOnly) Usable(context.Context, factors.Subject) (factors.Offer, bool, error) {
	return factors.Offer{}, false, nil
}
func (f strengthOnly) Begin(context.Context, factors.Subject) (factors.Challenge, error) {
	return factors.Challenge{}, factors.ErrNotSupported
}
func (f strengthOnly) Prove(context.Context, factors.Subject, factors.Response) (factors.Proof, error) {
	return factors.Proof{}, factors.ErrNotSupported
}
