package totp

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"image"
	_ "image/png" // image.Decode of the QR code
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

func TestNewOptions(t *testing.T) {
	t.Parallel()
	kv := openStore(t)
	sec := testSecrets(t)
	tests := []struct {
		name string
		kv   KV
		opt  Options
		ok   bool
	}{
		{"defaults", kv, Options{Secrets: sec}, true},
		{"all set", kv, Options{Secrets: sec, Issuer: "Acme", Algorithm: "sha512", Digits: 8, Period: 60, Skew: 2, SecretSize: 32, EnrollTTL: time.Minute}, true},
		{"no store", nil, Options{Secrets: sec}, false},
		{"no secrets", kv, Options{}, false},
		{"md5", kv, Options{Secrets: sec, Algorithm: "MD5"}, false},
		{"7 digits", kv, Options{Secrets: sec, Digits: 7}, false},
		{"long period", kv, Options{Secrets: sec, Period: 3600}, false},
		{"wide skew", kv, Options{Secrets: sec, Skew: 10}, false},
		{"short secret", kv, Options{Secrets: sec, SecretSize: 10}, false},
		{"colon in issuer", kv, Options{Secrets: sec, Issuer: "a:b"}, false},
		{"negative ttl", kv, Options{Secrets: sec, EnrollTTL: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.kv, tt.opt)
			if (err == nil) != tt.ok {
				t.Fatalf("New: err %v, want ok=%v", err, tt.ok)
			}
			if err == nil && f.Kind() != "totp" {
				t.Errorf("Kind %q", f.Kind())
			}
		})
	}
}

func TestBeginEnroll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		opt                  Options
		issuer, alg          string
		digits, period, size int
	}{
		{"defaults", Options{}, "keygate", "SHA1", 6, 30, 20},
		{"custom", Options{Issuer: "Acme Corp", Algorithm: "SHA256", Digits: 8, Period: 60, SecretSize: 32}, "Acme Corp", "SHA256", 8, 60, 32},
		{"sha512", Options{Algorithm: "SHA512"}, "keygate", "SHA512", 6, 30, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.opt)
			e, err := fx.f.BeginEnroll(context.Background(), "alice", "alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			img, format, err := image.Decode(bytes.NewReader(e.QRPNG))
			if err != nil || format != "png" {
				t.Fatalf("QR code: format %q, err %v", format, err)
			}
			if b := img.Bounds(); b.Dx() != 256 || b.Dy() != 256 {
				t.Errorf("QR code is %v, want 256×256", b)
			}
			raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
			if err != nil || len(raw) != tt.size {
				t.Fatalf("secret %d bytes (err %v), want %d", len(raw), err, tt.size)
			}
			u, err := url.Parse(e.URL)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			for k, want := range map[string]string{
				"issuer": tt.issuer, "secret": e.Secret, "algorithm": tt.alg,
				"digits": strconv.Itoa(tt.digits), "period": strconv.Itoa(tt.period),
			} {
				if q.Get(k) != want {
					t.Errorf("URL %s = %q, want %q", k, q.Get(k), want)
				}
			}
			if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/"+tt.issuer+":alice@example.com" {
				t.Errorf("URL %s: wrong scheme, type or label", e.URL)
			}
			if want := clockStart().Add(10 * time.Minute); !e.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt %v, want %v", e.ExpiresAt, want)
			}
			// Pending only: nothing is listed, nothing verifies.
			if l, _ := fx.f.List(context.Background(), "alice"); len(l) != 0 {
				t.Errorf("pending enrolment listed: %v", l)
			}
			if _, ok, err := fx.f.Verify(context.Background(), "alice", fx.codeAt(t, e.Secret, fx.clk.Now())); ok || !errors.Is(err, factors.ErrNotEnrolled) {
				t.Errorf("pending enrolment verified: ok=%v err=%v", ok, err)
			}
		})
	}
}

func TestBeginEnrollAccountName(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	e, err := fx.f.BeginEnroll(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(e.URL); u.Path != "/keygate:alice" {
		t.Errorf("empty account name: label %q, want the user", u.Path)
	}
	for _, bad := range []string{"a:b", "a\nb", strings.Repeat("x", 129)} {
		if _, err := fx.f.BeginEnroll(ctx, "alice", bad); err == nil {
			t.Errorf("account name %q accepted", bad)
		}
	}
	if _, err := fx.f.BeginEnroll(ctx, "", "x"); err == nil {
		t.Error("empty user accepted")
	}
}

func TestFinishEnroll(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	now := fx.clk.Now()
	e, err := fx.f.BeginEnroll(ctx, "alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	right := fx.codeAt(t, e.Secret, now)
	wrong := fx.codeAt(t, e.Secret, now.Add(-5*fx.step()))

	if _, err := fx.f.FinishEnroll(ctx, "alice", e.ID, wrong, ""); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong code: err %v, want ErrInvalidCode", err)
	}
	if _, err := fx.f.FinishEnroll(ctx, "bob", e.ID, right, ""); !errors.Is(err, factors.ErrExpired) {
		t.Fatalf("another user finishing alice's enrolment: err %v, want ErrExpired", err)
	}
	// Still pending after the failures.
	cred, err := fx.f.FinishEnroll(ctx, "alice", e.ID, right, "")
	if err != nil {
		t.Fatalf("right code after a wrong one: %v", err)
	}
	if cred.ID != e.ID || cred.Kind != "totp" || cred.Name != "Authenticator app" || !cred.CreatedAt.Equal(now) {
		t.Errorf("credential %+v", cred)
	}
	list, err := fx.f.List(ctx, "alice")
	if err != nil || len(list) != 1 || list[0] != cred {
		t.Fatalf("List: %v %v, want [%v]", list, err, cred)
	}
	if _, err := fx.f.FinishEnroll(ctx, "alice", e.ID, right, "again"); !errors.Is(err, factors.ErrExpired) {
		t.Errorf("second FinishEnroll: err %v, want ErrExpired (consumed)", err)
	}
	// The confirming code's step is used: it cannot sign in.
	if _, ok, err := fx.f.Verify(ctx, "alice", right); ok || !errors.Is(err, factors.ErrReplayed) {
		t.Errorf("enrolment code reused to sign in: ok=%v err=%v, want ErrReplayed", ok, err)
	}
	if _, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, e.Secret, now.Add(fx.step()))); !ok || err != nil {
		t.Errorf("next step after enrolment: ok=%v err=%v", ok, err)
	}
	if _, err := fx.f.FinishEnroll(ctx, "alice", "", right, ""); !errors.Is(err, factors.ErrExpired) {
		t.Errorf("empty enrolment id: err %v", err)
	}
}

func TestFinishEnrollNames(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	begin := func() (Enrollment, string) {
		e, err := fx.f.BeginEnroll(ctx, "alice", "")
		if err != nil {
			t.Fatal(err)
		}
		return e, fx.codeAt(t, e.Secret, fx.clk.Now())
	}
	for i, want := range []string{"Authenticator app", "Authenticator app 2", "Authenticator app 3"} {
		e, code := begin()
		c, err := fx.f.FinishEnroll(ctx, "alice", e.ID, code, "")
		if err != nil || c.Name != want {
			t.Fatalf("default name #%d: %q %v, want %q", i+1, c.Name, err, want)
		}
	}
	e, code := begin()
	for _, tt := range []struct {
		name string
		want error
	}{
		{"authenticator APP 2", factors.ErrNameTaken},
		{"bad\x00name", factors.ErrInvalidName},
		{"evil\u202Etxt.exe", factors.ErrInvalidName},
		{strings.Repeat("n", 65), factors.ErrInvalidName},
		{"   ", factors.ErrInvalidName},
	} {
		if _, err := fx.f.FinishEnroll(ctx, "alice", e.ID, code, tt.name); !errors.Is(err, tt.want) {
			t.Errorf("name %q: err %v, want %v", tt.name, err, tt.want)
		}
	}
	// The refused names did not consume the enrolment.
	c, err := fx.f.FinishEnroll(ctx, "alice", e.ID, code, "  Phone  ")
	if err != nil || c.Name != "Phone" {
		t.Fatalf("after refused names: %q %v", c.Name, err)
	}
}

func TestFinishEnrollExpired(t *testing.T) {
	t.Parallel()
	t.Run("clock", func(t *testing.T) {
		fx := newFixture(t, Options{EnrollTTL: time.Minute})
		e, err := fx.f.BeginEnroll(context.Background(), "alice", "")
		if err != nil {
			t.Fatal(err)
		}
		fx.clk.Advance(time.Minute)
		code := fx.codeAt(t, e.Secret, fx.clk.Now())
		if _, err := fx.f.FinishEnroll(context.Background(), "alice", e.ID, code, ""); !errors.Is(err, factors.ErrExpired) {
			t.Fatalf("err %v, want ErrExpired", err)
		}
	})
	t.Run("store TTL", func(t *testing.T) {
		t.Parallel()
		// The clock stands still: only the store's TTL can expire it.
		// Badger keeps expiry in whole seconds, hence the generous wait.
		fx := newFixture(t, Options{EnrollTTL: time.Second})
		fx.f.enrollTTL = time.Second
		e, err := fx.f.BeginEnroll(context.Background(), "alice", "")
		if err != nil {
			t.Fatal(err)
		}
		// Pretend the pending record is valid for an hour so that the
		// store's TTL is all that ends it.
		fx.clk.Set(e.ExpiresAt.Add(-time.Hour))
		time.Sleep(2500 * time.Millisecond)
		code := fx.codeAt(t, e.Secret, fx.clk.Now())
		if _, err := fx.f.FinishEnroll(context.Background(), "alice", e.ID, code, ""); !errors.Is(err, factors.ErrExpired) {
			t.Fatalf("err %v, want ErrExpired", err)
		}
	})
}

// TestOathtool checks the codes of an independent implementation (Debian's
// oathtool, from oath-toolkit) against Verify at a pinned time, for each
// algorithm, digit count and period.
func TestOathtool(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool missing: .ci/run installs it")
		}
		t.Skip("!!! SKIPPING the independent TOTP check: oathtool is missing (apt-get install -y oathtool) !!!")
	}
	tests := []struct {
		name   string
		opt    Options
		mode   string
		digits int
		period int
	}{
		{"default", Options{}, "SHA1", 6, 30},
		{"8 digits", Options{Digits: 8}, "SHA1", 8, 30},
		{"sha256", Options{Algorithm: "SHA256"}, "SHA256", 6, 30},
		{"sha512 8 digits", Options{Algorithm: "SHA512", Digits: 8}, "SHA512", 8, 30},
		{"period 60", Options{Period: 60, SecretSize: 32}, "SHA1", 6, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.opt)
			ctx := context.Background()
			oath := func(secret string, at time.Time) string {
				t.Helper()
				cmd := exec.Command(bin, "--totp="+tt.mode, "-b", "--digits="+strconv.Itoa(tt.digits),
					"--time-step-size="+strconv.Itoa(tt.period)+"s",
					"-N", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
				// The key goes in on stdin, not on the command line where
				// every process could read it.
				cmd.Stdin = strings.NewReader(secret + "\n")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("oathtool: %v", err)
				}
				return strings.TrimSpace(string(out))
			}
			t0 := fx.clk.Now()
			e, err := fx.f.BeginEnroll(ctx, "alice", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fx.f.FinishEnroll(ctx, "alice", e.ID, oath(e.Secret, t0), ""); err != nil {
				t.Fatalf("FinishEnroll with oathtool's code: %v", err)
			}
			step := time.Duration(tt.period) * time.Second
			for _, at := range []time.Time{t0.Add(7 * step), t0.Add(100*step + 3*time.Second), t0.Add(24 * time.Hour)} {
				fx.clk.Set(at)
				code := oath(e.Secret, at)
				if len(code) != tt.digits {
					t.Fatalf("oathtool gave %d digits", len(code))
				}
				if _, ok, err := fx.f.Verify(ctx, "alice", code); !ok || err != nil {
					t.Errorf("at %v: oathtool's code refused: ok=%v err=%v", at, ok, err)
				}
			}
			// The previous step's code, by oathtool, is within the skew.
			at := t0.Add(48 * time.Hour)
			fx.clk.Set(at)
			if _, ok, err := fx.f.Verify(ctx, "alice", oath(e.Secret, at.Add(-step))); !ok || err != nil {
				t.Errorf("oathtool's code of the previous step refused: ok=%v err=%v", ok, err)
			}
		})
	}
}

// TestVerifyWindow covers which codes are accepted when. Each case enrols a
// fresh app well before "now" and runs its tries in order; a try's code is
// that of now + offset steps.
func TestVerifyWindow(t *testing.T) {
	t.Parallel()
	type try struct {
		offset  int    // the code of now + offset steps…
		literal bool   // …unless literal: then raw is the code
		raw     string //
		ok      bool
		err     error
	}
	tests := []struct {
		name  string
		tries []try
	}{
		{"current step once", []try{{offset: 0, ok: true}, {offset: 0, err: factors.ErrReplayed}}},
		{"previous step accepted once (skew)", []try{{offset: -1, ok: true}, {offset: -1, err: factors.ErrReplayed}}},
		{"next step accepted (skew)", []try{{offset: 1, ok: true}}},
		{"two steps ago refused", []try{{offset: -2}}},
		{"two steps ahead refused", []try{{offset: 2}}},
		{"monotonic: older step refused after a newer one", []try{{offset: 0, ok: true}, {offset: -1, err: factors.ErrReplayed}}},
		{"older step first, then newer", []try{{offset: -1, ok: true}, {offset: 0, ok: true}, {offset: 1, ok: true}, {offset: 1, err: factors.ErrReplayed}}},
		{"wrong code", []try{{literal: true, raw: "wrong"}, {literal: true, raw: "12345"}, {literal: true, raw: ""}, {literal: true, raw: "abcdef"}, {literal: true, raw: "1234567"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, Options{})
			ctx := context.Background()
			now := clockStart()
			cred, secret := fx.enroll(t, "alice", "", now.Add(-10*fx.step()))
			fx.clk.Set(now)
			for i, tr := range tt.tries {
				code := tr.raw
				if code == "wrong" {
					code = fx.wrongCode(t, secret, now)
				} else if !tr.literal {
					code = fx.codeAt(t, secret, now.Add(time.Duration(tr.offset)*fx.step()))
				}
				id, ok, err := fx.f.Verify(ctx, "alice", code)
				if ok != tr.ok || !errors.Is(err, tr.err) || (tr.err == nil && err != nil) {
					t.Fatalf("try %d (offset %d): ok=%v err=%v, want ok=%v err=%v", i, tr.offset, ok, err, tr.ok, tr.err)
				}
				if ok && id != cred.ID {
					t.Errorf("try %d: credential %q, want %q", i, id, cred.ID)
				}
			}
		})
	}
}

func TestVerifyNormalizesSpacesAndRecordsUse(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	now := clockStart()
	_, secret := fx.enroll(t, "alice", "", now.Add(-10*fx.step()))
	fx.clk.Set(now)
	code := fx.codeAt(t, secret, now)
	if _, ok, err := fx.f.Verify(ctx, "alice", " "+code[:3]+" "+code[3:]+"\t"); !ok || err != nil {
		t.Fatalf("spaced code: ok=%v err=%v", ok, err)
	}
	l, err := fx.f.List(ctx, "alice")
	if err != nil || len(l) != 1 || !l[0].LastUsedAt.Equal(now) {
		t.Errorf("LastUsedAt not recorded: %+v %v", l, err)
	}
	if _, ok, err := fx.f.Verify(ctx, "nobody", code); ok || !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("user without apps: ok=%v err=%v, want ErrNotEnrolled", ok, err)
	}
}

// TestVerifyConcurrent: of 20 simultaneous requests with one valid code,
// exactly one wins and every other one is told the code was used.
func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	now := clockStart()
	_, secret := fx.enroll(t, "alice", "", now.Add(-10*fx.step()))
	fx.clk.Set(now)
	code := fx.codeAt(t, secret, now)

	const n = 20
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		oks      = make([]bool, n)
		errs     = make([]error, n)
		ctx      = context.Background()
		replayed int
	)
	for i := range n {
		wg.Go(func() {
			<-start
			_, oks[i], errs[i] = fx.f.Verify(ctx, "alice", code)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i := range n {
		switch {
		case oks[i] && errs[i] == nil:
			wins++
		case !oks[i] && errors.Is(errs[i], factors.ErrReplayed):
			replayed++
		default:
			t.Errorf("request %d: ok=%v err=%v", i, oks[i], errs[i])
		}
	}
	if wins != 1 || replayed != n-1 {
		t.Fatalf("%d successes and %d replays, want 1 and %d", wins, replayed, n-1)
	}
}

// TestSecretNotAtRest scans every raw value in the store, with an app
// enrolled and another enrolment pending, for the secret in any encoding
// a careless implementation might store it in.
func TestSecretNotAtRest(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	_, active := fx.enroll(t, "alice", "", clockStart())
	pending, err := fx.f.BeginEnroll(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	values := 0
	for _, secret := range []string{active, pending.Secret} {
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
		if err != nil {
			t.Fatal(err)
		}
		forms := map[string][]byte{
			"base32":           []byte(secret),
			"base32 lowercase": []byte(strings.ToLower(secret)),
			"raw":              raw,
			"base64":           []byte(base64.StdEncoding.EncodeToString(raw)),
			"base64url":        []byte(base64.RawURLEncoding.EncodeToString(raw)),
			"hex":              []byte(hex.EncodeToString(raw)),
		}
		err = fx.kv.Scan(ctx, "", func(it store.Item) error {
			values++
			for form, b := range forms {
				if bytes.Contains(it.Value, b) || bytes.Contains([]byte(it.Key), b) {
					t.Errorf("key %q holds the secret (%s)", it.Key, form)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if values < 4 {
		t.Fatalf("scanned %d values; want the credential and the pending enrolment, twice", values)
	}
}

// TestSealedSecretBoundToUser: a credential record copied onto another
// user does not open, so it does not verify.
func TestSealedSecretBoundToUser(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	now := clockStart()
	_, secret := fx.enroll(t, "alice", "", now.Add(-10*fx.step()))
	it, err := fx.kv.Get(ctx, credKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.kv.Set(ctx, credKey("mallory"), it.Value, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fx.clk.Set(now)
	if _, ok, err := fx.f.Verify(ctx, "mallory", fx.codeAt(t, secret, now)); ok || !errors.Is(err, factors.ErrSealed) {
		t.Fatalf("moved credential: ok=%v err=%v, want ErrSealed", ok, err)
	}
}

func TestTwoAppsAndRegistry(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	now := clockStart()
	phone, phoneSecret := fx.enroll(t, "alice", "Phone", now.Add(-20*fx.step()))
	tablet, tabletSecret := fx.enroll(t, "alice", "Tablet", now.Add(-10*fx.step()))

	// Either app signs in, and Verify says which one.
	fx.clk.Set(now)
	for _, app := range []struct {
		id, secret string
		at         time.Time
	}{{phone.ID, phoneSecret, now}, {tablet.ID, tabletSecret, now}} {
		id, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, app.secret, app.at))
		if !ok || err != nil || id != app.id {
			t.Fatalf("app %s: id %q ok=%v err=%v", app.id, id, ok, err)
		}
	}

	renames := []struct {
		id, name string
		want     error
	}{
		{phone.ID, "tablet", factors.ErrNameTaken},
		{phone.ID, "", factors.ErrInvalidName},
		{phone.ID, strings.Repeat("x", 65), factors.ErrInvalidName},
		{phone.ID, "tab\x7f", factors.ErrInvalidName},
		{"no-such-id", "Other", factors.ErrNotFound},
		{phone.ID, "PHONE", nil}, // a change of case of its own name
		{phone.ID, "Work phone", nil},
		{phone.ID, strings.Repeat("ж", 64), nil},
		{phone.ID, "Work phone", nil},
	}
	for _, r := range renames {
		if err := fx.f.Rename(ctx, "alice", r.id, r.name); !errors.Is(err, r.want) || (r.want == nil && err != nil) {
			t.Errorf("Rename(%q, %q): err %v, want %v", r.id, r.name, err, r.want)
		}
	}
	list, err := fx.f.List(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].Name != "Work phone" || list[1].Name != "Tablet" {
		t.Fatalf("List after renames: %+v %v", list, err)
	}

	// Removing the phone kills its codes, not the tablet's.
	if err := fx.f.Remove(ctx, "alice", phone.ID); err != nil {
		t.Fatal(err)
	}
	if err := fx.f.Remove(ctx, "alice", phone.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("second Remove: err %v, want ErrNotFound", err)
	}
	next := now.Add(fx.step())
	fx.clk.Set(next)
	if _, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, phoneSecret, next)); ok || err != nil {
		t.Errorf("removed app's code: ok=%v err=%v", ok, err)
	}
	if id, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, tabletSecret, next)); !ok || err != nil || id != tablet.ID {
		t.Errorf("remaining app's code: id %q ok=%v err=%v", id, ok, err)
	}

	// RemoveAll also ends pending enrolments.
	fx.enroll(t, "alice", "Spare", now)
	pending, err := fx.f.BeginEnroll(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := fx.f.RemoveAll(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("RemoveAll: %d %v, want 2", n, err)
	}
	if l, err := fx.f.List(ctx, "alice"); err != nil || len(l) != 0 {
		t.Errorf("List after RemoveAll: %v %v", l, err)
	}
	if _, err := fx.f.FinishEnroll(ctx, "alice", pending.ID, fx.codeAt(t, pending.Secret, fx.clk.Now()), ""); !errors.Is(err, factors.ErrExpired) {
		t.Errorf("pending enrolment survived RemoveAll: err %v", err)
	}
	if _, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, tabletSecret, fx.clk.Now())); ok || !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("Verify after RemoveAll: ok=%v err=%v", ok, err)
	}
	if n, err := fx.f.RemoveAll(ctx, "alice"); err != nil || n != 0 {
		t.Errorf("second RemoveAll: %d %v", n, err)
	}
}

func TestUserIsolation(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	ctx := context.Background()
	now := clockStart()
	alice, _ := fx.enroll(t, "alice", "", now.Add(-10*fx.step()))
	_, bobSecret := fx.enroll(t, "bob", "", now.Add(-10*fx.step()))
	// A user name that would extend another's key prefix if unescaped.
	fx.enroll(t, "alice/x", "", now.Add(-10*fx.step()))
	fx.clk.Set(now)

	for _, at := range []time.Time{now.Add(-fx.step()), now, now.Add(fx.step())} {
		if _, ok, err := fx.f.Verify(ctx, "alice", fx.codeAt(t, bobSecret, at)); ok || err != nil {
			t.Errorf("bob's code verified for alice: ok=%v err=%v", ok, err)
		}
	}
	if err := fx.f.Remove(ctx, "bob", alice.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("bob removed alice's app: err %v", err)
	}
	if err := fx.f.Rename(ctx, "bob", alice.ID, "mine"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("bob renamed alice's app: err %v", err)
	}
	if n, err := fx.f.RemoveAll(ctx, "alice"); err != nil || n != 1 {
		t.Errorf("RemoveAll(alice): %d %v", n, err)
	}
	for _, u := range []string{"bob", "alice/x"} {
		if l, err := fx.f.List(ctx, u); err != nil || len(l) != 1 {
			t.Errorf("%s after alice's RemoveAll: %v %v", u, l, err)
		}
	}
	// bob's codes still work for bob.
	if _, ok, err := fx.f.Verify(ctx, "bob", fx.codeAt(t, bobSecret, now)); !ok || err != nil {
		t.Errorf("bob's own code: ok=%v err=%v", ok, err)
	}
}

// BenchmarkVerify measures Verify on the real store. "accept" is the whole
// call including the durable replay-guard write (an fsync, so it measures
// the disk); "reject" is everything but that write (load, unseal, compute
// and compare the window for a wrong code); "window" is the code check
// alone on an unsealed secret.
func BenchmarkVerify(b *testing.B) {
	fx := newFixture(b, Options{})
	ctx := context.Background()
	start := clockStart()
	_, secret := fx.enroll(b, "alice", "", start)

	b.Run("accept", func(b *testing.B) {
		// One fresh step per iteration, codes made before the timer runs.
		base := fx.clk.Now().Add(10 * fx.step())
		codes := make([]string, b.N)
		for i := range codes {
			codes[i] = fx.codeAt(b, secret, base.Add(time.Duration(i)*fx.step()))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			fx.clk.Set(base.Add(time.Duration(i) * fx.step()))
			if _, ok, err := fx.f.Verify(ctx, "alice", codes[i]); !ok || err != nil {
				b.Fatalf("ok=%v err=%v", ok, err)
			}
		}
		fx.clk.Set(base.Add(time.Duration(b.N) * fx.step()))
	})
	b.Run("reject", func(b *testing.B) {
		wrong := fx.wrongCode(b, secret, fx.clk.Now())
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := fx.f.Verify(ctx, "alice", wrong); ok || err != nil {
				b.Fatalf("ok=%v err=%v", ok, err)
			}
		}
	})
	b.Run("window", func(b *testing.B) {
		raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
		p := params{alg: fx.f.algorithm, digits: fx.f.digits, period: fx.f.period}
		now := fx.clk.Now()
		wrong := fx.wrongCode(b, secret, now)
		b.ReportAllocs()
		for b.Loop() {
			if m := check(raw, p, wrong, now, fx.f.skew, 0); m.fresh || m.stale {
				b.Fatal("wrong code matched")
			}
		}
	})
}
