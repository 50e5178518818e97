package authn

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	"github.com/keygate/keygate/factors/recovery"
	"github.com/keygate/keygate/factors/totp"
	"github.com/keygate/keygate/policy"
)

// flowRig is the real parts the account flows' tests (password change and
// reset, account recovery, email change, "always ask") run on: Badger on
// disk, users, sessions, the regulator, the app, email-code and
// recovery-code factors, the activity log with its notices, account
// recoveries, and an outbox directory every mail is read back from; one
// injected clock.
type flowRig struct {
	t        *testing.T
	ctx      context.Context
	clock    *clock
	kv       KV
	users    *Users
	sessions *Sessions
	devices  *Devices
	mfa      *MFA
	outbox   *mail.Outbox
	log      *activity.Log
	rs       *RecoveryRequests
}

// flowUser is alice, with a confirmed address; bob's is not confirmed.
const flowUser, flowPassword = "alice", "correct-staple-battery-7"

// flowClient is the browser the rig's sessions come from.
var flowClient = Client{IP: "198.51.100.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", Lang: "en"}

func newFlowRig(t *testing.T, so SessionOptions) *flowRig {
	t.Helper()
	e := &flowRig{t: t, ctx: context.Background(), clock: newClock()}
	e.kv = openStore(t, t.TempDir())
	var err error
	if e.outbox, err = mail.NewOutbox(filepath.Join(t.TempDir(), "outbox"), "keygate <keygate@example.com>"); err != nil {
		t.Fatal(err)
	}
	sec := func(p string) *factors.Secrets {
		s, err := factors.NewSecrets(bytes.Repeat([]byte{9}, 32), p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tf, err := totp.New(e.kv, totp.Options{Issuer: "keygate-test", Now: e.clock.Now, Secrets: sec("totp")})
	if err != nil {
		t.Fatal(err)
	}
	ef, err := emailcode.New(e.kv, e.outbox, emailcode.Options{Now: e.clock.Now, Secrets: sec("email")})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := recovery.New(e.kv, recovery.Options{Now: e.clock.Now, Secrets: sec("recovery")})
	if err != nil {
		t.Fatal(err)
	}
	notices := activity.NewNotices(e.outbox, "keygate", quietLogger(), e.clock.Now)
	e.log = activity.NewLog(e.kv, activity.Options{Notices: notices, PortalURL: "https://login.example.com", Now: e.clock.Now})
	reg := NewRegulator(e.kv, RegulationOptions{Now: e.clock.Now})
	e.users = NewUsers(e.kv, UserOptions{Hasher: testHasher(), Policy: PasswordPolicy{MinLength: 12}, Now: e.clock.Now, Regulator: reg, Events: e.log})
	so.Now = e.clock.Now
	if e.sessions, err = NewSessions(e.ctx, e.kv, so); err != nil {
		t.Fatal(err)
	}
	e.devices = NewDevices(e.kv, e.clock.Now)
	e.rs = NewRecoveryRequests(e.kv, RecoveryOptions{PortalURL: "https://login.example.com", Now: e.clock.Now, Logger: quietLogger()})
	e.mfa = NewMFA(e.users, e.sessions, MFAOptions{Factors: factors.Set{tf, ef, rf}, Devices: e.devices,
		Links: NewEnrollLinks(e.kv, e.clock.Now), EmailEnrollment: true, Regulator: reg, Activity: e.log,
		Recoveries: e.rs, Now: e.clock.Now})
	for _, nu := range []NewUser{
		{Username: flowUser, Email: "alice@example.com", Password: flowPassword, EmailVerified: true},
		{Username: "bob", Email: "bob@example.com", Password: "violet-harbour-lantern-9"}, // address not confirmed
	} {
		if _, err := e.users.Add(e.ctx, nu); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// session starts a password session for user, from flowClient.
func (e *flowRig) session(user string) *Session {
	e.t.Helper()
	u, err := e.users.Get(e.ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.sessions.Create(e.ctx, u, policy.Proof{Kind: policy.FactorPassword, At: e.clock.Now()},
		Meta{IP: flowClient.IP, UserAgent: flowClient.UserAgent})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}
