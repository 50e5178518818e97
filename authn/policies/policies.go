// Package policies keeps the factor policy as numbered versions in the
// store, so that admins change it while keygate serves, see who changed
// what, and go back; the version in force is compiled into a policy.Holder
// that the proxy reads on every request.
package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/policy"
	"go.yaml.in/yaml/v3"
)

// Policies live in the store as numbered versions so that admins can change
// them while keygate serves, see who changed what, and go back.
//
// Storage keys:
//
//	policy/head        the version in force, whole (policyRecord); CAS on it
//	policy/v/<%010d>   every version ever in force, written after head
//
// Why head holds the whole record and not only a number: the
// compare-and-swap on head is the one step that decides a change. If the
// process dies right after it, head alone still says everything about the
// version in force, and the history entry is written again from it at the
// next start (Load) or listing (History). Had the history entry been
// written first and a pointer swapped second, a crash in between would
// leave an entry no pointer names and a number the next writer cannot
// claim.
const (
	policyHeadKey     = "policy/head"
	policyVersionsKey = "policy/v/"
	policyRecordV     = 1
)

// KV is the part of store.KV the policy store uses: head is a durable
// record updated by compare-and-swap, history entries are plain writes.
// Errors follow the store contract (store.ErrNotFound, store.ErrConflict).
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	Scan(ctx context.Context, prefix string, fn func(store.Item) error) error
}

// Events hears every version this process puts in force (metrics show the
// version in force). It is called while the store orders its writers, so
// it must be quick and must not call back into the store.
type Events interface {
	PolicyInForce(version int)
}

// maxCASRetries bounds Load's loop when another process stores version 1
// at the same moment.
const maxCASRetries = 16

func durable() store.WriteOptions { return store.WriteOptions{Durable: true} }

// Errors of the policy store where callers branch.
var (
	// ErrConflict: the version the change was based on is no longer
	// the current one (another admin saved meanwhile). Nothing was written.
	ErrConflict = errors.New("policies: the policy changed meanwhile")
	// ErrVersionNotFound: no such policy version.
	ErrVersionNotFound = errors.New("policies: no such policy version")
	// ErrNoPolicy: the store holds no policy yet (Load was never run).
	ErrNoPolicy = errors.New("policies: no policy is stored yet")
)

// ConflictError says which version is current now; it matches
// ErrConflict.
type ConflictError struct{ Current int }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: the current version is %d", ErrConflict, e.Current)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Version is one stored version of the policy.
type Version struct {
	Version int           `json:"version"`
	Policy  policy.Policy `json:"policy"`
	// YAML is the policy as keygate writes it (YAML): versions are
	// compared and diffed in this form, so a change of formatting or
	// comments alone is no change. Comments of an imported file are not
	// kept; the version's Comment says why it was made.
	YAML    string    `json:"yaml"`
	Author  string    `json:"author"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
	// Diff is a unified line diff of YAML against the previous version
	// (empty for version 1).
	Diff string `json:"diff,omitempty"`
	// RestoredFrom names the version a rollback copied (0 = none).
	RestoredFrom int `json:"restored_from,omitempty"`
	// Unchanged is set (and nothing stored) when an update asked for
	// exactly the rules already in force.
	Unchanged bool `json:"unchanged,omitempty"`
}

// Summary is a version in a history listing.
type Summary struct {
	Version      int       `json:"version"`
	Author       string    `json:"author"`
	At           time.Time `json:"at"`
	Comment      string    `json:"comment,omitempty"`
	RestoredFrom int       `json:"restored_from,omitempty"`
	Rules        int       `json:"rules"`
	Added        int       `json:"added"`   // lines added against the previous version
	Removed      int       `json:"removed"` // lines removed
	Current      bool      `json:"current"`
}

// policyRecord is the stored form of a version. The rules are kept as the
// YAML admins read, and parsed strictly on the way back.
type policyRecord struct {
	V            int       `json:"v"`
	Version      int       `json:"version"`
	YAML         string    `json:"yaml"`
	Author       string    `json:"author"`
	At           time.Time `json:"at"`
	Comment      string    `json:"comment,omitempty"`
	Diff         string    `json:"diff,omitempty"`
	RestoredFrom int       `json:"restored_from,omitempty"`
}

// Options configure a Store.
type Options struct {
	// Guard adds checks of its own to Compile's (the web layer refuses
	// rules that read as if they opened the admin area). Its problems are
	// listed with Compile's; nil = none.
	Guard func(policy.Policy) policy.ValidationErrors
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Events hears every version put in force, at Load and after each
	// change (nil = nobody).
	Events Events
	// Compile says what policies are compiled against: the registered
	// second-factor kinds (zero: round 1's four).
	Compile policy.CompileOptions
}

// Store keeps the versioned policy in the store and the current version,
// compiled, in a policy.Holder that the proxy reads on every request.
//
// A new version is validated and compiled before anything is written, and
// put in force (Holder.Store, one atomic swap) only after the store took
// it: a version that fails to compile never replaces the running one, and
// requests in flight finish with the version they loaded.
type Store struct {
	kv      KV
	holder  *policy.Holder
	guard   func(policy.Policy) policy.ValidationErrors
	now     func() time.Time
	log     *slog.Logger
	events  Events
	compile policy.CompileOptions
	// mu orders this process's writers: without it two quick saves could
	// reach the store as 6 then 7 but the holder as 7 then 6, leaving the
	// proxy on a version that is no longer current. The store's CAS still
	// decides between writers; mu only keeps the swap in the same order.
	// It orders the follower (Follow) with them the same way.
	mu sync.Mutex
	// held is the number of the version in the holder (0: none yet), so
	// that a change the feed reports late (this replica's own save, or an
	// older one after a newer) never replaces a newer version. Versions
	// are numbered by the compare-and-swap on head, so a higher number is
	// always the later save. Written under mu; atomic so that InForce
	// (readiness, status pages) never waits for a save's round trip.
	held atomic.Int64
	// refused is the last version the follower could not compile here,
	// so that a re-read after a gap does not log it again. Guarded by mu.
	refused int
}

// New returns the policy store over kv, putting versions in force
// in holder.
func New(kv KV, holder *policy.Holder, o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{kv: kv, holder: holder, guard: o.Guard, now: o.Now, log: o.Logger, events: o.Events, compile: o.Compile}
}

// Check validates p as a new version would be: Compile's problems and the
// guard's, all of them, in rule order. It returns the compiled policy when
// there are none.
func (ps *Store) Check(p policy.Policy) (*policy.Compiled, error) {
	compiled, err := policy.CompileWith(p, ps.compile)
	var problems policy.ValidationErrors
	if err != nil && !errors.As(err, &problems) {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	if ps.guard != nil {
		problems = append(problems, ps.guard(p)...)
	}
	if len(problems) == 0 {
		return compiled, nil
	}
	// Compile lists in document order and the guard rule by rule; merged,
	// they are sorted by rule so that each rule's problems stand together.
	slices.SortStableFunc(problems, func(a, b policy.FieldError) int { return ruleIndexOf(a.Path) - ruleIndexOf(b.Path) })
	return nil, problems
}

// ruleIndexOf reads the rule index of a problem path ("rules[3].paths[0]"
// is 3); problems outside the rules ("default") sort first.
func ruleIndexOf(path string) int {
	rest, ok := strings.CutPrefix(path, "rules[")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, ']'), 0)])
	if err != nil {
		return -1
	}
	return n
}

// Load puts the stored current version in force. On the very first start
// (no version stored) initial becomes version 1, by author; it must pass
// Check like any later version. It reports whether it created version 1.
func (ps *Store) Load(ctx context.Context, initial policy.Policy, author string) (Version, bool, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for range maxCASRetries {
		head, _, err := ps.head(ctx)
		if errors.Is(err, ErrNoPolicy) {
			compiled, err := ps.Check(initial)
			if err != nil {
				return Version{}, false, fmt.Errorf("the policy to store as version 1: %w", err)
			}
			rec := policyRecord{V: policyRecordV, Version: 1, YAML: YAML(initial), Author: author, At: ps.clock(),
				Comment: "first start: the policy of the configuration file"}
			if _, err := ps.kv.CompareAndSet(ctx, policyHeadKey, encodePolicyRecord(rec), 0, durable()); err != nil {
				if errors.Is(err, store.ErrConflict) {
					continue // another process stored one first: load that
				}
				return Version{}, false, fmt.Errorf("store policy version 1: %w", err)
			}
			ps.writeHistory(ctx, rec)
			ps.holder.Store(compiled)
			ps.inForce(rec.Version)
			v, err := rec.version()
			return v, true, err
		}
		if err != nil {
			return Version{}, false, err
		}
		v, err := head.version()
		if err != nil {
			return Version{}, false, fmt.Errorf("policy version %d: %w", head.Version, err)
		}
		// The stored version passed Check when it was saved. Only
		// Compile decides here: a guard that became stricter since
		// (admin.max_age lowered) must not stop keygate from starting,
		// and the admin area enforces its own rule anyway.
		compiled, err := policy.CompileWith(v.Policy, ps.compile)
		if err != nil {
			return Version{}, false, fmt.Errorf("policy version %d no longer compiles; import a corrected policy with `keygate policy import` while keygate is stopped: %w", head.Version, err)
		}
		if ps.guard != nil {
			if problems := ps.guard(v.Policy); len(problems) > 0 {
				ps.log.Warn("the policy in force has rules the admin area ignores", "version", v.Version, "problems", problems.Error())
			}
		}
		ps.repairHistory(ctx, head)
		ps.holder.Store(compiled)
		ps.inForce(v.Version)
		return v, false, nil
	}
	return Version{}, false, fmt.Errorf("load policy: %w", store.ErrConflict)
}

// Current returns the version in force.
func (ps *Store) Current(ctx context.Context) (Version, error) {
	head, _, err := ps.head(ctx)
	if err != nil {
		return Version{}, err
	}
	return head.version()
}

// Version returns version n.
func (ps *Store) Version(ctx context.Context, n int) (Version, error) {
	if n <= 0 {
		return Version{}, fmt.Errorf("%w: %d", ErrVersionNotFound, n)
	}
	it, err := ps.kv.Get(ctx, versionKey(n))
	if errors.Is(err, store.ErrNotFound) {
		// Head is written first; its history entry may still be missing.
		head, _, herr := ps.head(ctx)
		if herr == nil && head.Version == n {
			return head.version()
		}
		return Version{}, fmt.Errorf("%w: %d", ErrVersionNotFound, n)
	}
	if err != nil {
		return Version{}, fmt.Errorf("load policy version %d: %w", n, err)
	}
	rec, err := decodePolicyRecord(it.Value)
	if err != nil {
		return Version{}, fmt.Errorf("policy version %d: %w", n, err)
	}
	return rec.version()
}

// History lists every version, newest first.
func (ps *Store) History(ctx context.Context) ([]Summary, error) {
	head, _, err := ps.head(ctx)
	if err != nil {
		return nil, err
	}
	var out []Summary
	err = ps.kv.Scan(ctx, policyVersionsKey, func(it store.Item) error {
		rec, err := decodePolicyRecord(it.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", it.Key, err)
		}
		out = append(out, rec.summary(head.Version))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list policy versions: %w", err)
	}
	if len(out) == 0 || out[len(out)-1].Version < head.Version {
		out = append(out, head.summary(head.Version))
	}
	slices.Reverse(out)
	return out, nil
}

// Diff returns a unified line diff from version a to version b.
func (ps *Store) Diff(ctx context.Context, a, b int) (string, error) {
	va, err := ps.Version(ctx, a)
	if err != nil {
		return "", err
	}
	vb, err := ps.Version(ctx, b)
	if err != nil {
		return "", err
	}
	return LineDiff(va.YAML, vb.YAML, fmt.Sprintf("version %d", a), fmt.Sprintf("version %d", b)), nil
}

// Update stores p as the next version and puts it in force, provided the
// current version is still ifVersion (what the admin started from; -1 =
// whatever is current). A policy with problems comes back as
// policy.ValidationErrors and nothing is stored; a changed current version
// as *ConflictError and nothing is stored. Rules identical to the
// current ones store nothing and come back with Unchanged set.
func (ps *Store) Update(ctx context.Context, p policy.Policy, ifVersion int, author, comment string) (Version, error) {
	return ps.update(ctx, p, ifVersion, author, comment, 0)
}

// Rollback stores a copy of version to as the next version (history only
// ever grows) and puts it in force; ifVersion as for Update.
func (ps *Store) Rollback(ctx context.Context, to, ifVersion int, author, comment string) (Version, error) {
	old, err := ps.Version(ctx, to)
	if err != nil {
		return Version{}, err
	}
	if comment == "" {
		comment = fmt.Sprintf("rollback to version %d", to)
	}
	return ps.update(ctx, old.Policy, ifVersion, author, comment, to)
}

func (ps *Store) update(ctx context.Context, p policy.Policy, ifVersion int, author, comment string, restoredFrom int) (Version, error) {
	// Validate and compile first: a policy with problems never touches
	// the store or the holder.
	compiled, err := ps.Check(p)
	if err != nil {
		return Version{}, err
	}
	text := YAML(p)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	head, sver, err := ps.head(ctx)
	if err != nil && !errors.Is(err, ErrNoPolicy) {
		return Version{}, err
	}
	if ifVersion >= 0 && head.Version != ifVersion {
		return Version{}, &ConflictError{Current: head.Version}
	}
	if sver != 0 && text == head.YAML {
		v, err := head.version()
		v.Unchanged = true
		return v, err
	}
	rec := policyRecord{
		V: policyRecordV, Version: head.Version + 1, YAML: text, Author: author, At: ps.clock(),
		Comment: comment, RestoredFrom: restoredFrom,
	}
	if sver != 0 {
		rec.Diff = LineDiff(head.YAML, text, fmt.Sprintf("version %d", head.Version), fmt.Sprintf("version %d", rec.Version))
	}
	if _, err := ps.kv.CompareAndSet(ctx, policyHeadKey, encodePolicyRecord(rec), sver, durable()); err != nil {
		if errors.Is(err, store.ErrConflict) {
			cur, _, _ := ps.head(ctx)
			return Version{}, &ConflictError{Current: cur.Version}
		}
		return Version{}, fmt.Errorf("store policy version %d: %w", rec.Version, err)
	}
	ps.writeHistory(ctx, rec)
	ps.holder.Store(compiled)
	ps.inForce(rec.Version)
	ps.log.Info("policy version in force", "version", rec.Version, "author", author, "restored_from", restoredFrom)
	return rec.version()
}

// head reads the current version; sver is its store version for the CAS
// (0 with ErrNoPolicy).
func (ps *Store) head(ctx context.Context) (policyRecord, uint64, error) {
	it, err := ps.kv.Get(ctx, policyHeadKey)
	if errors.Is(err, store.ErrNotFound) {
		return policyRecord{}, 0, ErrNoPolicy
	}
	if err != nil {
		return policyRecord{}, 0, fmt.Errorf("load current policy: %w", err)
	}
	rec, err := decodePolicyRecord(it.Value)
	if err != nil {
		return policyRecord{}, 0, fmt.Errorf("current policy: %w", err)
	}
	return rec, it.Version, nil
}

// writeHistory files rec under its number. A failure is logged, not
// returned: the version is in force already (head holds it) and the entry
// is written again by repairHistory.
func (ps *Store) writeHistory(ctx context.Context, rec policyRecord) {
	if _, err := ps.kv.Set(context.WithoutCancel(ctx), versionKey(rec.Version), encodePolicyRecord(rec), durable()); err != nil {
		ps.log.Error("policy history entry not written; it is written again at the next start", "version", rec.Version, "err", err)
	}
}

// repairHistory writes head's history entry if a crash lost it.
func (ps *Store) repairHistory(ctx context.Context, head policyRecord) {
	if _, err := ps.kv.Get(ctx, versionKey(head.Version)); errors.Is(err, store.ErrNotFound) {
		ps.writeHistory(ctx, head)
	}
}

func (ps *Store) inForce(version int) {
	ps.held.Store(int64(version))
	if ps.events != nil {
		ps.events.PolicyInForce(version)
	}
}

func (ps *Store) clock() time.Time { return ps.now().Round(0).UTC() }

func versionKey(n int) string { return fmt.Sprintf("%s%010d", policyVersionsKey, n) }

func encodePolicyRecord(r policyRecord) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Strings, ints and a time: marshalling cannot fail.
		panic("policies: encode policy record: " + err.Error())
	}
	return b
}

func decodePolicyRecord(b []byte) (policyRecord, error) {
	var r policyRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return policyRecord{}, fmt.Errorf("decode policy record: %w", err)
	}
	if r.V != policyRecordV {
		return policyRecord{}, fmt.Errorf("decode policy record: unknown schema version %d", r.V)
	}
	return r, nil
}

func (r policyRecord) version() (Version, error) {
	p, err := policy.Parse([]byte(r.YAML))
	if err != nil {
		return Version{}, fmt.Errorf("policy version %d: %w", r.Version, err)
	}
	return Version{
		Version: r.Version, Policy: p, YAML: r.YAML, Author: r.Author, At: r.At,
		Comment: r.Comment, Diff: r.Diff, RestoredFrom: r.RestoredFrom,
	}, nil
}

func (r policyRecord) summary(current int) Summary {
	s := Summary{Version: r.Version, Author: r.Author, At: r.At, Comment: r.Comment,
		RestoredFrom: r.RestoredFrom, Current: r.Version == current}
	if p, err := policy.Parse([]byte(r.YAML)); err == nil {
		s.Rules = len(p.Rules)
	}
	s.Added, s.Removed = DiffStat(r.Diff)
	return s
}

// YAML writes p the one way keygate writes policies: two-space
// indents, lists of plain values on one line ("hosts: [a, b]"), keys in the
// order of the policy model. Versions are stored, compared and diffed in
// this form.
func YAML(p policy.Policy) string {
	var n yaml.Node
	if err := n.Encode(p); err != nil {
		// A policy is strings, lists and durations: encoding cannot fail.
		panic("policies: encode policy: " + err.Error())
	}
	flowScalarLists(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		panic("policies: encode policy: " + err.Error())
	}
	_ = enc.Close()
	return b.String()
}

// flowScalarLists puts every list of plain values on one line, the way
// admins write hosts, paths and methods by hand.
func flowScalarLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 && !slices.ContainsFunc(n.Content, func(c *yaml.Node) bool { return c.Kind != yaml.ScalarNode }) {
		n.Style = yaml.FlowStyle
	}
	for _, c := range n.Content {
		flowScalarLists(c)
	}
}

// LineDiff is a unified diff (three lines of context) from a to b, or ""
// when they are equal. It is meant for policies of up to a few thousand
// lines: beyond that the middle part that differs is shown as replaced
// whole rather than spending quadratic time on it.
func LineDiff(a, b, nameA, nameB string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	ops := diffOps(al, bl)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	const ctxLines = 3
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from ctxLines before this change to ctxLines after the
		// last change that is at most 2*ctxLines equal lines away.
		start := max(i-ctxLines, 0)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctxLines {
				end = min(end+ctxLines, len(ops))
				break
			}
			end = run
		}
		hunk := ops[start:end]
		aStart, bStart, aN, bN := hunk[0].a, hunk[0].b, 0, 0
		for _, o := range hunk {
			if o.kind != '+' {
				aN++
			}
			if o.kind != '-' {
				bN++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aN), hunkRange(bStart, bN))
		for _, o := range hunk {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		i = end
	}
	return out.String()
}

// DiffStat counts the added and removed lines of a LineDiff.
func DiffStat(diff string) (added, removed int) {
	for line := range strings.SplitSeq(diff, "\n") {
		switch {
		case strings.HasPrefix(line, "+++"), strings.HasPrefix(line, "---"):
		case strings.HasPrefix(line, "+"):
			added++
		case strings.HasPrefix(line, "-"):
			removed++
		}
	}
	return added, removed
}

func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// diffOp is one line of a diff: ' ' kept, '-' only in a, '+' only in b;
// a and b are the 0-based line numbers where it stands in each text.
type diffOp struct {
	kind byte
	text string
	a, b int
}

// diffOps aligns two line lists on a longest common subsequence, after
// taking off the common head and tail (for a policy edit that is nearly
// everything).
func diffOps(a, b []string) []diffOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []diffOp
	for i := range pre {
		ops = append(ops, diffOp{kind: ' ', text: a[i], a: i, b: i})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	const maxCells = 4 << 20
	if len(ma)*len(mb) > maxCells {
		for i, l := range ma {
			ops = append(ops, diffOp{kind: '-', text: l, a: pre + i, b: pre})
		}
		for j, l := range mb {
			ops = append(ops, diffOp{kind: '+', text: l, a: pre + len(ma), b: pre + j})
		}
	} else {
		// lcs[i][j] = length of the LCS of ma[i:] and mb[j:].
		w := len(mb) + 1
		lcs := make([]int32, (len(ma)+1)*w)
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) || j < len(mb) {
			switch {
			case i < len(ma) && j < len(mb) && ma[i] == mb[j]:
				ops = append(ops, diffOp{kind: ' ', text: ma[i], a: pre + i, b: pre + j})
				i++
				j++
			case i < len(ma) && (j == len(mb) || lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
				// Removals before additions, as diff(1) shows a change.
				ops = append(ops, diffOp{kind: '-', text: ma[i], a: pre + i, b: pre + j})
				i++
			default:
				ops = append(ops, diffOp{kind: '+', text: mb[j], a: pre + i, b: pre + j})
				j++
			}
		}
	}
	for k := range suf {
		ia, ib := len(a)-suf+k, len(b)-suf+k
		ops = append(ops, diffOp{kind: ' ', text: a[ia], a: ia, b: ib})
	}
	return ops
}
