package webauthn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
)

var ctx = context.Background()

// softEnv is a factor on a real store without a page server.
func softEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	e := &env{kv: openStore(t), origin: "https://app.example.test"}
	e.f = e.factor(t, func(o *Options) {
		o.RPID = "localhost" // the soft key signs for "localhost"
		if mod != nil {
			mod(o)
		}
	})
	return e
}

func softEnrol(t testing.TB, f *Factor, user string, k *softKey, name string) factors.Credential {
	t.Helper()
	opts, id, err := f.BeginRegistration(ctx, User{Username: user}, SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.FinishRegistration(ctx, User{Username: user}, id, k.create(opts), name)
	if err != nil {
		t.Fatalf("enrol %s: %v", user, err)
	}
	return c
}

func softLogin(t testing.TB, f *Factor, user string, k *softKey) (Assertion, error) {
	t.Helper()
	opts, id, err := f.BeginLogin(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	return f.FinishLogin(ctx, user, id, k.get(opts))
}

func TestNewRefusesBadOptions(t *testing.T) {
	kv := openStore(t)
	for name, o := range map[string]Options{
		"no rp id":      {Origins: []string{"https://a.example.com"}},
		"no origins":    {RPID: "example.com"},
		"origin path":   {RPID: "example.com", Origins: []string{"https://a.example.com/x"}},
		"origin scheme": {RPID: "example.com", Origins: []string{"ftp://a.example.com"}},
		"ip rp id":      {RPID: "127.0.0.1", Origins: []string{"http://127.0.0.1"}},
		"short ttl":     {RPID: "example.com", Origins: []string{"https://a.example.com"}, CeremonyTTL: time.Second},
		"mds root only": {RPID: "example.com", Origins: []string{"https://a.example.com"}, Trust: TrustOptions{MDSRootFile: "x.pem"}},
		"missing blob":  {RPID: "example.com", Origins: []string{"https://a.example.com"}, Trust: TrustOptions{MDSBlobFile: "/nonexistent/blob.jwt"}},
		"missing roots": {RPID: "example.com", Origins: []string{"https://a.example.com"}, Trust: TrustOptions{RootCertFiles: []string{"/nonexistent/ca.pem"}}},
	} {
		if _, err := New(kv, o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	f, err := New(kv, Options{RPID: "example.com", Origins: []string{"https://a.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != "webauthn" || f.ttl != 5*time.Minute {
		t.Errorf("kind %q ttl %v", f.Kind(), f.ttl)
	}
}

// The options are what the browser's parse*FromJSON take: the publicKey
// member, with direct attestation, exclusions, credProps and the right
// selection per kind; the user handle is random, not the username.
func TestRegistrationOptions(t *testing.T) {
	e := softEnv(t, nil)
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")

	var o struct {
		Challenge   string `json:"challenge"`
		Attestation string `json:"attestation"`
		Timeout     int    `json:"timeout"`
		RP          struct{ ID, Name string }
		User        struct {
			ID, Name, DisplayName string
		}
		Exclude []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"excludeCredentials"`
		Selection struct {
			Attachment  string `json:"authenticatorAttachment"`
			ResidentKey string `json:"residentKey"`
			UV          string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		Extensions map[string]any `json:"extensions"`
		Hints      []string       `json:"hints"`
	}
	for _, kind := range []AuthenticatorKind{SecurityKey, Platform} {
		raw, id, err := e.f.BeginRegistration(ctx, User{Username: "alice", DisplayName: "Alice A."}, kind)
		if err != nil || id == "" {
			t.Fatal(id, err)
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), `"publicKey"`) {
			t.Errorf("options are wrapped in publicKey: %s", raw)
		}
		handle, _ := b64u.DecodeString(o.User.ID)
		if len(handle) != 32 || bytes.Contains(handle, []byte("alice")) || o.User.Name != "alice" || o.User.DisplayName != "Alice A." {
			t.Errorf("user entity %+v", o.User)
		}
		if o.Attestation != "direct" || o.RP.ID != "localhost" || o.Timeout != 30000 || len(o.Challenge) < 43 {
			t.Errorf("options %s", raw)
		}
		if len(o.Exclude) != 1 || o.Exclude[0].ID != b64u.EncodeToString(k.id) {
			t.Errorf("excludeCredentials %+v", o.Exclude)
		}
		if o.Extensions["credProps"] != true {
			t.Errorf("extensions %v", o.Extensions)
		}
		want := [3]string{"cross-platform", "discouraged", "preferred"}
		if kind == Platform {
			want = [3]string{"platform", "required", "required"}
		}
		if got := [3]string{o.Selection.Attachment, o.Selection.ResidentKey, o.Selection.UV}; got != want {
			t.Errorf("%s: selection %v, want %v", kind, got, want)
		}
	}
	if _, _, err := e.f.BeginRegistration(ctx, User{Username: "alice"}, "usb"); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestLoginOptions(t *testing.T) {
	e := softEnv(t, nil)
	if _, _, err := e.f.BeginLogin(ctx, "nobody"); !errors.Is(err, factors.ErrNotEnrolled) {
		t.Fatalf("BeginLogin without credentials: %v", err)
	}
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	var o struct {
		Allow []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
		UV   string `json:"userVerification"`
		RPID string `json:"rpId"`
	}
	raw, _, err := e.f.BeginLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &o)
	if len(o.Allow) != 1 || o.Allow[0].ID != b64u.EncodeToString(k.id) || o.UV != "preferred" || o.RPID != "localhost" {
		t.Errorf("login options %s", raw)
	}
	o.Allow, o.UV = nil, ""
	raw, _, err = e.f.BeginPasskey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &o)
	if len(o.Allow) != 0 || o.UV != "required" {
		t.Errorf("passkey options %s", raw)
	}
}

// A ceremony is finished at most once, only by the Finish of its own kind
// and for its own user, and not after its TTL (on our clock).
func TestCeremonyBinding(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := softEnv(t, func(o *Options) { o.Now = clock.Now; o.CeremonyTTL = time.Minute })
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	softEnrol(t, e.f, "bob", newSoftKey(t, e.origin), "")
	_, before := e.record(t, "alice")

	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCeremony) || !errors.Is(err, factors.ErrExpired) {
			t.Errorf("%s: %v, want ErrCeremony", name, err)
		}
	}
	// Expired on our clock, although the store still holds it.
	opts, id, _ := e.f.BeginLogin(ctx, "alice")
	resp := k.get(opts)
	// The store forgets it on its own (real) clock too.
	if it, err := e.kv.Get(ctx, ceremonyKey(id)); err != nil || it.ExpiresAt.IsZero() || time.Until(it.ExpiresAt) > time.Minute+time.Second {
		t.Fatalf("ceremony in the store: expires %v, %v", it.ExpiresAt, err)
	}
	clock.Add(time.Minute)
	_, err := e.f.FinishLogin(ctx, "alice", id, resp)
	check("expired login", err)
	clock.Add(-time.Minute)
	_, err = e.f.FinishLogin(ctx, "alice", id, resp)
	check("expired ceremony, retried", err) // consumed by the first try

	ropts, rid, _ := e.f.BeginRegistration(ctx, User{Username: "alice"}, SecurityKey)
	clock.Add(61 * time.Second)
	_, err = e.f.FinishRegistration(ctx, User{Username: "alice"}, rid, newSoftKey(t, e.origin).create(ropts), "")
	check("expired registration", err)
	clock.Add(-61 * time.Second)

	opts, id, _ = e.f.BeginLogin(ctx, "alice")
	_, _, err = e.f.FinishPasskey(ctx, id, k.get(opts))
	check("login ceremony finished as passkey", err)

	opts, id, _ = e.f.BeginLogin(ctx, "alice")
	_, err = e.f.FinishLogin(ctx, "bob", id, k.get(opts))
	check("alice's ceremony finished for bob", err)

	opts, id, _ = e.f.BeginPasskey(ctx)
	_, err = e.f.FinishLogin(ctx, "alice", id, k.get(opts))
	check("passkey ceremony finished as login", err)

	_, err = e.f.FinishLogin(ctx, "alice", "no-such-ceremony", []byte(`{}`))
	check("unknown ceremony", err)
	_, err = e.f.FinishLogin(ctx, "alice", "", []byte(`{}`))
	check("empty ceremony", err)

	e.unchanged(t, "alice", before)

	// And the happy path still works with the counter where it was.
	if _, err := softLogin(t, e.f, "alice", k); err != nil {
		t.Fatal(err)
	}
}

// Of concurrent finishes of one ceremony exactly one wins; of concurrent
// assertions carrying the same counter (a cloned key racing the original)
// exactly one is accepted.
func TestConcurrentFinish(t *testing.T) {
	e := softEnv(t, nil)
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")

	opts, id, _ := e.f.BeginLogin(ctx, "alice")
	resp := k.get(opts)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.f.FinishLogin(ctx, "alice", id, resp) })
	}
	wg.Wait()
	if ok := slices.IndexFunc(errs, func(err error) bool { return err == nil }); ok < 0 || slices.ContainsFunc(errs[ok+1:], func(err error) bool { return err == nil }) {
		t.Fatalf("one ceremony finished %v", errs)
	}

	// Two ceremonies, both answered with the same counter.
	o1, id1, _ := e.f.BeginLogin(ctx, "alice")
	o2, id2, _ := e.f.BeginLogin(ctx, "alice")
	k.counter++
	r1, r2 := k.sign(challengeOf(t, o1)), k.sign(challengeOf(t, o2))
	var err1, err2 error
	wg.Go(func() { _, err1 = e.f.FinishLogin(ctx, "alice", id1, r1) })
	wg.Go(func() { _, err2 = e.f.FinishLogin(ctx, "alice", id2, r2) })
	wg.Wait()
	if (err1 == nil) == (err2 == nil) {
		t.Fatalf("same counter twice: %v / %v", err1, err2)
	}
	if !errors.Is(err1, ErrCloneWarning) && !errors.Is(err2, ErrCloneWarning) {
		t.Fatalf("loser: %v / %v, want ErrCloneWarning", err1, err2)
	}
	r, _ := e.record(t, "alice")
	if c := r.Creds[0]; c.SignCount != k.counter || c.CloneWarnings != 1 {
		t.Errorf("counter %d (want %d), clone warnings %d", c.SignCount, k.counter, c.CloneWarnings)
	}
}

func challengeOf(t testing.TB, options json.RawMessage) string {
	t.Helper()
	var o struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	return o.Challenge
}

func TestRegistry(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := softEnv(t, func(o *Options) { o.Now = clock.Now })
	if got, err := e.f.List(ctx, "alice"); err != nil || len(got) != 0 {
		t.Fatalf("List of a new user: %v %v", got, err)
	}
	k1, k2, k3 := newSoftKey(t, e.origin), newSoftKey(t, e.origin), newSoftKey(t, e.origin)
	c1 := softEnrol(t, e.f, "alice", k1, "")
	clock.Add(time.Second)
	c2 := softEnrol(t, e.f, "alice", k2, "")
	clock.Add(time.Second)
	c3 := softEnrol(t, e.f, "alice", k3, "  Backup key ")
	if c1.Name != "Security key" || c2.Name != "Security key 2" || c3.Name != "Backup key" || c1.Kind != "webauthn" || c1.Detail != "Security key" {
		t.Errorf("names %q %q %q, detail %q", c1.Name, c2.Name, c3.Name, c1.Detail)
	}
	if c1.ID != b64u.EncodeToString(k1.id) || !c1.CreatedAt.Equal(clock.Now().Add(-2*time.Second)) {
		t.Errorf("credential %+v", c1)
	}

	// Names: unique (case-insensitive), printable, at most 64 characters;
	// a bad name is refused before the ceremony is spent.
	opts, id, _ := e.f.BeginRegistration(ctx, User{Username: "alice"}, SecurityKey)
	k4 := newSoftKey(t, e.origin)
	resp := k4.create(opts)
	if _, err := e.f.FinishRegistration(ctx, User{Username: "alice"}, id, resp, "backup KEY"); !errors.Is(err, factors.ErrNameTaken) {
		t.Errorf("taken name: %v", err)
	}
	if _, err := e.f.FinishRegistration(ctx, User{Username: "alice"}, id, resp, "bad\u202ename"); !errors.Is(err, factors.ErrInvalidName) {
		t.Errorf("bidi name: %v", err)
	}
	if _, err := e.f.FinishRegistration(ctx, User{Username: "alice"}, id, resp, "Key 4"); err != nil {
		t.Errorf("the ceremony was spent by a refused name: %v", err)
	}

	for name, want := range map[string]error{
		"":                      factors.ErrInvalidName,
		strings.Repeat("x", 65): factors.ErrInvalidName,
		"a\tb":                  factors.ErrInvalidName,
		"SECURITY KEY 2":        factors.ErrNameTaken,
	} {
		if err := e.f.Rename(ctx, "alice", c1.ID, name); !errors.Is(err, want) {
			t.Errorf("Rename %q: %v, want %v", name, err, want)
		}
	}
	if err := e.f.Rename(ctx, "alice", c1.ID, "security key"); err != nil { // its own name, other case
		t.Errorf("Rename to own name: %v", err)
	}
	if err := e.f.Rename(ctx, "alice", c1.ID, "Office YubiKey"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "!!", b64u.EncodeToString([]byte("nope"))} {
		if err := e.f.Rename(ctx, "alice", id, "x"); !errors.Is(err, factors.ErrNotFound) {
			t.Errorf("Rename unknown %q: %v", id, err)
		}
		if err := e.f.Remove(ctx, "alice", id); !errors.Is(err, factors.ErrNotFound) {
			t.Errorf("Remove unknown %q: %v", id, err)
		}
	}
	if err := e.f.Rename(ctx, "bob", c1.ID, "x"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("Rename of another user's credential: %v", err)
	}

	list, err := e.f.List(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(list))
	for i, c := range list {
		names[i] = c.Name
	}
	if !slices.Equal(names, []string{"Office YubiKey", "Security key 2", "Backup key", "Key 4"}) {
		t.Errorf("List order/names %v", names)
	}

	// A login stamps LastUsedAt.
	clock.Add(time.Hour)
	if _, err := softLogin(t, e.f, "alice", k2); err != nil {
		t.Fatal(err)
	}
	list, _ = e.f.List(ctx, "alice")
	if !list[1].LastUsedAt.Equal(clock.Now()) || !list[0].LastUsedAt.IsZero() {
		t.Errorf("LastUsedAt %v / %v", list[1].LastUsedAt, list[0].LastUsedAt)
	}

	// Remove: the credential no longer signs in, and can be enrolled again
	// (its ID index is released).
	if err := e.f.Remove(ctx, "alice", c2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := softLogin(t, e.f, "alice", k2); err == nil {
		t.Fatal("removed credential signed in")
	} else {
		verifyReason(t, err, ReasonUnknownCredential)
	}
	softEnrol(t, e.f, "bob", k2, "")

	// RemoveAll: everything goes, the user handle too.
	r, _ := e.record(t, "alice")
	oldHandle := r.Handle
	if n, err := e.f.RemoveAll(ctx, "alice"); n != 3 || err != nil {
		t.Fatalf("RemoveAll = %d, %v", n, err)
	}
	if n, err := e.f.RemoveAll(ctx, "alice"); n != 0 || err != nil {
		t.Fatalf("RemoveAll again = %d, %v", n, err)
	}
	if _, _, err := e.f.BeginLogin(ctx, "alice"); !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("BeginLogin after RemoveAll: %v", err)
	}
	if _, err := e.kv.Get(ctx, handleKey(oldHandle)); !isNotFound(err) {
		t.Errorf("handle index kept: %v", err)
	}
	softEnrol(t, e.f, "alice", k1, "")
	if r, _ := e.record(t, "alice"); bytes.Equal(r.Handle, oldHandle) {
		t.Error("user handle reused after RemoveAll")
	}
}

// One credential belongs to one user: enrolling it for another is refused,
// and enrolling it twice for the same user too.
func TestCredentialEnrolledOnce(t *testing.T) {
	e := softEnv(t, nil)
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	_, before := e.record(t, "alice")
	for _, user := range []string{"alice", "bob"} {
		opts, id, err := e.f.BeginRegistration(ctx, User{Username: user}, SecurityKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.f.FinishRegistration(ctx, User{Username: user}, id, k.create(opts), "")
		verifyReason(t, err, ReasonAlreadyRegistered)
	}
	e.unchanged(t, "alice", before)
	if list, _ := e.f.List(ctx, "bob"); len(list) != 0 {
		t.Errorf("bob got %v", list)
	}
}

// Passkey sign-in finds the user from the handle alone; unknown handles
// and non-discoverable responses are refused.
func TestPasskeySoft(t *testing.T) {
	e := softEnv(t, nil)
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	opts, id, _ := e.f.BeginPasskey(ctx)
	user, a, err := e.f.FinishPasskey(ctx, id, k.get(opts))
	if err != nil || user != "alice" || !a.UserVerified || a.CredentialID != b64u.EncodeToString(k.id) {
		t.Fatalf("passkey: %q %+v %v", user, a, err)
	}

	for name, mutate := range map[string]func(*softKey){
		"unknown handle": func(k *softKey) { k.handle = randomBytes(32) },
		"short handle":   func(k *softKey) { k.handle = []byte("alice") },
		"no handle":      func(k *softKey) { k.handle = nil },
		"no UV":          func(k *softKey) { k.uv = false },
	} {
		kk := *k
		mutate(&kk)
		opts, id, _ := e.f.BeginPasskey(ctx)
		_, _, err := e.f.FinishPasskey(ctx, id, kk.get(opts))
		want := map[string]string{"no handle": ReasonNotAllowed, "no UV": ReasonUVRequired}[name]
		if want == "" {
			want = ReasonUnknownCredential
		}
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != want {
			t.Errorf("%s: %v, want %s", name, err, want)
		}
	}
}

// Garbage in, typed errors out, nothing stored.
func TestMalformedResponses(t *testing.T) {
	e := softEnv(t, nil)
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	_, before := e.record(t, "alice")
	good := func() (string, []byte) {
		opts, id, _ := e.f.BeginLogin(ctx, "alice")
		return id, k.get(opts)
	}
	cases := map[string]func([]byte) []byte{
		"empty":     func([]byte) []byte { return nil },
		"not json":  func([]byte) []byte { return []byte("{") },
		"wrong id":  func(b []byte) []byte { return bytes.Replace(b, []byte(`"rawId":"`), []byte(`"rawId":"AA`), 1) },
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		id, resp := good()
		_, err := e.f.FinishLogin(ctx, "alice", id, cases[n](resp))
		var ve *VerifyError
		if !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a VerifyError", n, err)
		}
	}
	e.unchanged(t, "alice", before)
}

// A second-factor sign-in accepts only the credentials it offered: one
// enrolled after Begin is refused, as is a response for another ceremony.
func TestLoginOnlyOfferedCredentials(t *testing.T) {
	e := softEnv(t, nil)
	k1, k2 := newSoftKey(t, e.origin), newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k1, "")
	opts, id, _ := e.f.BeginLogin(ctx, "alice")
	softEnrol(t, e.f, "alice", k2, "")
	_, before := e.record(t, "alice")
	_, err := e.f.FinishLogin(ctx, "alice", id, k2.get(opts))
	verifyReason(t, err, ReasonNotAllowed)
	e.unchanged(t, "alice", before)
	if _, err := softLogin(t, e.f, "alice", k2); err != nil {
		t.Errorf("k2 in a new ceremony: %v", err)
	}
}
