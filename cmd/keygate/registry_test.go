package main

import (
	"slices"
	"testing"

	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	"github.com/keygate/keygate/factors/recovery"
	"github.com/keygate/keygate/factors/sms"
	smsgw "github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/factors/totp"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
)

// registrySet is every factor cmd can register, in factorKinds' order.
// Kind and Strength read no state, so zero values do.
func registrySet(t *testing.T) factors.Set {
	t.Helper()
	set := factors.Set{&fwa.Factor{}, &totp.Factor{}, &emailcode.Factor{}, &sms.Factor{}, &recovery.Factor{}}
	if !slices.Equal(set.Kinds(), factorKinds) {
		t.Fatalf("registry kinds %v, factorKinds %v", set.Kinds(), factorKinds)
	}
	return set
}

// The kinds the factors register under are the policy's names, so a
// proof's kind reads the same on both sides.
func TestFactorKindsMatchPolicy(t *testing.T) {
	set := registrySet(t)
	for _, k := range []string{policy.FactorWebAuthn, policy.FactorTOTP, policy.FactorEmail, policy.FactorRecovery} {
		if set.Get(k) == nil {
			t.Errorf("policy factor %q is no registered kind (%v)", k, set.Kinds())
		}
	}
}

// The strength order is fixed: none < code (email, SMS, recovery) < app <
// key < hardware key; attestation raises only WebAuthn; the chooser's
// order is strongest first.
func TestStrengthOrder(t *testing.T) {
	set := registrySet(t)
	s := func(kind string, attested bool) factors.Strength { return set.Get(kind).Strength(attested) }
	order := []factors.Strength{factors.StrengthNone, s("email", false), s("totp", false), s("webauthn", false), s("webauthn", true)}
	if !slices.IsSorted(order) || len(slices.Compact(slices.Clone(order))) != 5 || order[4] != factors.StrengthHardware {
		t.Fatalf("order %v: want none < email < totp < webauthn < attested", order)
	}
	for _, k := range []string{"email", "sms", "recovery"} {
		for _, att := range []bool{false, true} {
			if s(k, att) != factors.StrengthCode {
				t.Errorf("%s (attested=%v) = %v, want code", k, att, s(k, att))
			}
		}
	}
	if s("totp", true) != factors.StrengthApp {
		t.Error("an attested flag raised TOTP")
	}
	for i := 1; i < len(set); i++ {
		if set[i].Strength(true) > set[i-1].Strength(true) {
			t.Errorf("chooser order %v is not strongest first", set.Kinds())
		}
	}
	if got := set.Reaching(factors.StrengthApp); !slices.Equal(got, []string{"webauthn", "totp"}) {
		t.Errorf("Reaching(totp) = %v", got)
	}
	if got := set.Reaching(factors.StrengthHardware); !slices.Equal(got, []string{"webauthn"}) {
		t.Errorf("Reaching(hardware) = %v", got)
	}
}

// What policies may name (the configuration's kinds) is what wireFactors
// can register, in the same order; SMS only once a provider is set.
func TestConfigFactorKindsMatchRegistry(t *testing.T) {
	cfg := config.Default()
	if got, want := cfg.FactorKinds(), slices.DeleteFunc(slices.Clone(factorKinds), func(k string) bool { return k == sms.Kind }); !slices.Equal(got, want) {
		t.Errorf("without SMS: %v, want %v", got, want)
	}
	cfg.SMS.Provider = smsgw.ProviderKannel
	if got := cfg.FactorKinds(); !slices.Equal(got, factorKinds) {
		t.Errorf("with SMS: %v, want %v", got, factorKinds)
	}
}
