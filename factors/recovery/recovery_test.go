package recovery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
)

// Interface guards: the real store is what the factor gets in production.
var _ KV = (*badgerstore.Store)(nil)

func openStore(t testing.TB) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{
		Path:   t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testSecrets(t testing.TB) *factors.Secrets {
	t.Helper()
	s, err := factors.NewSecrets(bytes.Repeat([]byte{42}, 32), "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func now() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }

func newFactor(t testing.TB, opt Options) (*Factor, *badgerstore.Store) {
	t.Helper()
	kv := openStore(t)
	if opt.Now == nil {
		opt.Now = now
	}
	if opt.Secrets == nil {
		opt.Secrets = testSecrets(t)
	}
	f, err := New(kv, opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f, kv
}

func generate(t testing.TB, f *Factor, user string) []string {
	t.Helper()
	codes, err := f.Generate(context.Background(), user)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return codes
}

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
		{"count 5", kv, Options{Secrets: sec, Count: 5}, true},
		{"no store", nil, Options{Secrets: sec}, false},
		{"no secrets", kv, Options{}, false},
		{"negative count", kv, Options{Secrets: sec, Count: -1}, false},
		{"huge count", kv, Options{Secrets: sec, Count: 1000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.kv, tt.opt)
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if err == nil && f.Kind() != "recovery" {
				t.Errorf("Kind %q", f.Kind())
			}
		})
	}
}

var codeShape = regexp.MustCompile(`^[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}$`)

func TestGenerate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		count int
		want  int
	}{{"default", 0, 10}, {"five", 5, 5}} {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newFactor(t, Options{Count: tt.count})
			ctx := context.Background()
			codes := generate(t, f, "alice")
			if len(codes) != tt.want {
				t.Fatalf("%d codes, want %d", len(codes), tt.want)
			}
			seen := map[string]bool{}
			for _, c := range codes {
				if !codeShape.MatchString(c) || strings.ContainsAny(c, "0oO1lIi") {
					t.Errorf("code %q has the wrong shape", c)
				}
				if seen[c] {
					t.Errorf("code %q twice", c)
				}
				seen[c] = true
			}
			if n, err := f.Remaining(ctx, "alice"); err != nil || n != tt.want {
				t.Errorf("Remaining: %d %v", n, err)
			}
			l, err := f.List(ctx, "alice")
			if err != nil || len(l) != 1 {
				t.Fatalf("List: %v %v", l, err)
			}
			c := l[0]
			if c.Kind != "recovery" || c.Name != "Recovery codes" || c.ID == "" || !c.CreatedAt.Equal(now()) || !c.LastUsedAt.IsZero() {
				t.Errorf("credential %+v", c)
			}
		})
	}
}

func TestNewCodeUsesWholeAlphabet(t *testing.T) {
	t.Parallel()
	counts := map[byte]int{}
	for range 1000 {
		c := newCode()
		if len(c) != codeLen {
			t.Fatalf("code %q", c)
		}
		for i := range len(c) {
			counts[c[i]]++
		}
	}
	// 12000 draws over 31 characters: about 387 each. A character that
	// never or seldom shows up means a broken sampler, not bad luck.
	for i := range len(alphabet) {
		if n := counts[alphabet[i]]; n < 250 {
			t.Errorf("%q drawn %d times of 12000", alphabet[i], n)
		}
	}
	if len(counts) != len(alphabet) {
		t.Errorf("%d distinct characters, want %d", len(counts), len(alphabet))
	}
}

func TestVerifyEachOnce(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	ctx := context.Background()
	codes := generate(t, f, "alice")
	for i, c := range codes {
		ok, left, err := f.Verify(ctx, "alice", c)
		if !ok || err != nil || left != len(codes)-i-1 {
			t.Fatalf("code %d: ok=%v left=%d err=%v", i, ok, left, err)
		}
		ok, left, err = f.Verify(ctx, "alice", c)
		if ok || !errors.Is(err, factors.ErrReplayed) || left != len(codes)-i-1 {
			t.Fatalf("code %d again: ok=%v left=%d err=%v, want ErrReplayed", i, ok, left, err)
		}
	}
	l, err := f.List(ctx, "alice")
	if err != nil || len(l) != 1 || l[0].Detail != "0 of 10 left" || !l[0].LastUsedAt.Equal(now()) {
		t.Errorf("List after using all: %+v %v", l, err)
	}
}

func TestVerifyNormalization(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	ctx := context.Background()
	codes := generate(t, f, "alice")
	plain := strings.ReplaceAll(codes[0], "-", "")
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"upper case", strings.ToUpper(codes[0]), true},
		{"no dashes", strings.ReplaceAll(codes[1], "-", ""), true},
		{"spaces instead of dashes", strings.ReplaceAll(codes[2], "-", " "), true},
		{"padded, tabs, mixed case", "  " + strings.ToUpper(codes[3][:7]) + "\t" + codes[3][7:] + " ", true},
		{"dashes in odd places", strings.Join(strings.Split(strings.ReplaceAll(codes[4], "-", ""), ""), "-"), true},
		{"too short", plain[:11], false},
		{"too long", plain + "x", false},
		{"ambiguous character", "0" + plain[1:], false},
		{"empty", "", false},
		{"non-ASCII", "ｋ" + plain[1:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, _, err := f.Verify(ctx, "alice", tt.input)
			if ok != tt.ok || err != nil {
				t.Fatalf("Verify(%q): ok=%v err=%v, want ok=%v", tt.input, ok, err, tt.ok)
			}
		})
	}
	if ok, _, err := f.Verify(ctx, "alice", "zzzz-zzzz-zzzz"); ok || err != nil {
		t.Errorf("well-formed unknown code: ok=%v err=%v", ok, err)
	}
}

func TestRegenerate(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	ctx := context.Background()
	old := generate(t, f, "alice")
	if ok, _, err := f.Verify(ctx, "alice", old[0]); !ok || err != nil {
		t.Fatalf("old code before regenerating: ok=%v err=%v", ok, err)
	}
	oldList, _ := f.List(ctx, "alice")
	fresh := generate(t, f, "alice")
	for _, c := range old {
		// Dead, not "used": they belong to no set any more.
		if ok, _, err := f.Verify(ctx, "alice", c); ok || err != nil {
			t.Errorf("old code %q after regenerating: ok=%v err=%v", c, ok, err)
		}
	}
	if ok, left, err := f.Verify(ctx, "alice", fresh[9]); !ok || err != nil || left != 9 {
		t.Errorf("new code: ok=%v left=%d err=%v", ok, left, err)
	}
	if err := f.Remove(ctx, "alice", oldList[0].ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("Remove with the old set's id: err %v, want ErrNotFound", err)
	}
	if n, err := f.Remaining(ctx, "alice"); err != nil || n != 9 {
		t.Errorf("Remaining: %d %v", n, err)
	}
}

// TestVerifyConcurrent: of 20 simultaneous requests with one code exactly
// one wins and every other one is told the code was used.
func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	codes := generate(t, f, "alice")
	const n = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		oks   = make([]bool, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			oks[i], _, errs[i] = f.Verify(context.Background(), "alice", codes[3])
		})
	}
	close(start)
	wg.Wait()
	wins, replayed := 0, 0
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
	if left, err := f.Remaining(context.Background(), "alice"); err != nil || left != 9 {
		t.Errorf("Remaining: %d %v, want 9", left, err)
	}
}

// TestVerifyConcurrentDifferentCodes: codes used at the same time all
// count; none of the marks is lost to another's write.
func TestVerifyConcurrentDifferentCodes(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	codes := generate(t, f, "alice")
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(codes))
	for i, c := range codes {
		wg.Go(func() {
			<-start
			ok, _, err := f.Verify(context.Background(), "alice", c)
			if !ok && err == nil {
				err = errors.New("refused")
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("code %d: %v", i, err)
		}
	}
	if left, err := f.Remaining(context.Background(), "alice"); err != nil || left != 0 {
		t.Errorf("Remaining: %d %v, want 0", left, err)
	}
}

// TestStoredForm scans every raw value for the codes in any spelling.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	f, kv := newFactor(t, Options{})
	ctx := context.Background()
	codes := generate(t, f, "alice")
	if ok, _, err := f.Verify(ctx, "alice", codes[0]); !ok || err != nil {
		t.Fatal(ok, err)
	}
	values := 0
	err := kv.Scan(ctx, "", func(it store.Item) error {
		values++
		for _, c := range codes {
			plain := strings.ReplaceAll(c, "-", "")
			for _, form := range []string{c, plain, strings.ToUpper(c), strings.ToUpper(plain), plain[:8]} {
				if bytes.Contains(it.Value, []byte(form)) || strings.Contains(it.Key, form) {
					t.Errorf("key %q holds a code (%q)", it.Key, form)
				}
			}
		}
		return nil
	})
	if err != nil || values != 1 {
		t.Fatalf("scan: %d values, err %v", values, err)
	}
}

func TestUserIsolation(t *testing.T) {
	t.Parallel()
	f, kv := newFactor(t, Options{})
	ctx := context.Background()
	alice := generate(t, f, "alice")
	if ok, _, err := f.Verify(ctx, "bob", alice[0]); ok || !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("bob without a set: ok=%v err=%v, want ErrNotEnrolled", ok, err)
	}
	bob := generate(t, f, "bob")
	for _, c := range alice {
		if ok, _, err := f.Verify(ctx, "bob", c); ok || err != nil {
			t.Errorf("alice's code verified for bob: ok=%v err=%v", ok, err)
		}
	}
	for _, c := range bob {
		if ok, _, err := f.Verify(ctx, "alice", c); ok || err != nil {
			t.Errorf("bob's code verified for alice: ok=%v err=%v", ok, err)
		}
	}
	// Alice's hashes copied onto mallory do not match there: the hash
	// context binds them to their user.
	it, err := kv.Get(ctx, setKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Set(ctx, setKey("mallory"), it.Value, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := f.Verify(ctx, "mallory", alice[1]); ok || err != nil {
		t.Errorf("copied set matched for another user: ok=%v err=%v", ok, err)
	}
	aliceList, _ := f.List(ctx, "alice")
	if err := f.Remove(ctx, "bob", aliceList[0].ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("bob removed by alice's set id: err %v", err)
	}
	if n, err := f.RemoveAll(ctx, "alice"); err != nil || n != 1 {
		t.Errorf("RemoveAll(alice): %d %v", n, err)
	}
	if ok, _, err := f.Verify(ctx, "bob", bob[0]); !ok || err != nil {
		t.Errorf("bob after alice's RemoveAll: ok=%v err=%v", ok, err)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	f, _ := newFactor(t, Options{})
	ctx := context.Background()
	if l, err := f.List(ctx, "alice"); err != nil || len(l) != 0 {
		t.Errorf("List without a set: %v %v", l, err)
	}
	if _, err := f.Remaining(ctx, "alice"); !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("Remaining without a set: err %v", err)
	}
	codes := generate(t, f, "alice")
	l, _ := f.List(ctx, "alice")
	if err := f.Rename(ctx, "alice", l[0].ID, "Mine"); !errors.Is(err, factors.ErrNotSupported) {
		t.Errorf("Rename: err %v, want ErrNotSupported", err)
	}
	if err := f.Remove(ctx, "alice", "no-such-id"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("Remove with a wrong id: err %v", err)
	}
	if err := f.Remove(ctx, "alice", l[0].ID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if ok, _, err := f.Verify(ctx, "alice", codes[0]); ok || !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("code after Remove: ok=%v err=%v", ok, err)
	}
	if err := f.Remove(ctx, "alice", l[0].ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("second Remove: err %v", err)
	}
	generate(t, f, "alice")
	for want := 1; want >= 0; want-- {
		if n, err := f.RemoveAll(ctx, "alice"); err != nil || n != want {
			t.Errorf("RemoveAll: %d %v, want %d", n, err, want)
		}
	}
	if _, err := f.Generate(ctx, ""); err == nil {
		t.Error("Generate for an empty user")
	}
}

func BenchmarkVerify(b *testing.B) {
	f, _ := newFactor(b, Options{})
	generate(b, f, "alice")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := f.Verify(ctx, "alice", "zzzz-zzzz-zzzz"); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
