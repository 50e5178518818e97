package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
)

// Badger lets one process open a data directory, so while keygate serves,
// the CLI's user commands reach it through a unix socket that only the
// owner of the data directory may open (mode 0600 from its first moment,
// see listenPrivateSocket). The actor in the audit log is the peer's OS
// user as the kernel reports it (SO_PEERCRED), never a name the client
// sends. The socket speaks small JSON over HTTP so both ends are plain
// net/http.

// userAdmin is what the `keygate user` commands need. localAdmin works on
// an open store; socketAdmin asks a running keygate.
type userAdmin interface {
	Add(ctx context.Context, nu authn.NewUser) (userView, error)
	List(ctx context.Context) ([]userView, error)
	Get(ctx context.Context, name string) (userView, error)
	SetPassword(ctx context.Context, name, password string) error
	SetDisabled(ctx context.Context, name string, disabled bool) error
	Delete(ctx context.Context, name string) error
	Factors(ctx context.Context, name string) ([]factors.Credential, error)
	ResetFactors(ctx context.Context, name, by string) (int, error)
	EnrollLink(ctx context.Context, name string, ttl time.Duration) (enrollLink, error)
	// Unlock ends the user's brute-force or "this wasn't me" lock and says
	// whether one was in force.
	Unlock(ctx context.Context, name string) (bool, error)
}

// enrollLink is an admin's one-time enrolment link.
type enrollLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// localAdmin applies user changes and their consequences: a disabled or
// deleted user, or a changed password, ends that user's sessions.
type localAdmin struct {
	users    *authn.Users
	sessions *authn.Sessions
	mfa      *authn.MFA
	baseURL  string // where enrolment links point
	log      *slog.Logger
	audit    *activity.Audit // records every change (admin: actorOf)
}

func (a *app) localAdmin() localAdmin {
	return localAdmin{users: a.users, sessions: a.sessions, mfa: a.mfa, baseURL: a.portalBase(), log: a.log, audit: a.audit}
}

func (l localAdmin) Factors(ctx context.Context, name string) ([]factors.Credential, error) {
	if _, err := l.users.Get(ctx, name); err != nil {
		return nil, err
	}
	return l.mfa.Credentials(ctx, name)
}

func (l localAdmin) ResetFactors(ctx context.Context, name, by string) (int, error) {
	if by == "" {
		by = actorOf(ctx)
	}
	u, err := l.users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	n, err := l.mfa.ResetFactors(ctx, name)
	if err == nil {
		l.log.Warn("admin reset the second factors of a user", "user", name, "by", by, "credentials", n)
		l.record(ctx, activity.AuditResetFactors, u.Username, map[string]string{"removed": strconv.Itoa(n)})
	}
	return n, err
}

func (l localAdmin) Unlock(ctx context.Context, name string) (bool, error) {
	was, err := l.mfa.UnlockByAdmin(ctx, name)
	if err == nil && was {
		l.log.Warn("admin unlocked a user", "user", name)
	}
	if err == nil {
		l.record(ctx, activity.AuditUnlock, name, map[string]string{"was_locked": strconv.FormatBool(was)})
	}
	return was, err
}

func (l localAdmin) EnrollLink(ctx context.Context, name string, ttl time.Duration) (enrollLink, error) {
	token, exp, err := l.mfa.IssueEnrollLink(ctx, name, ttl)
	if err != nil {
		return enrollLink{}, err
	}
	l.record(ctx, activity.AuditEnrollLink, name, map[string]string{"expires_at": exp.UTC().Format(time.RFC3339)})
	return enrollLink{URL: l.baseURL + "/.keygate/enroll/" + token, ExpiresAt: exp}, nil
}

// userView is a user as the CLI shows it: never the password hash.
type userView struct {
	Username      string    `json:"username"`
	Email         string    `json:"email"`
	DisplayName   string    `json:"display_name"`
	Groups        []string  `json:"groups"`
	Disabled      bool      `json:"disabled"`
	EmailVerified bool      `json:"email_verified"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func viewOf(u authn.User) userView {
	return userView{Username: u.Username, Email: u.Email, DisplayName: u.DisplayName, Groups: u.Groups,
		Disabled: u.Disabled, EmailVerified: u.EmailVerified, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func (l localAdmin) Add(ctx context.Context, nu authn.NewUser) (userView, error) {
	u, err := l.users.Add(ctx, nu)
	if err == nil {
		l.record(ctx, activity.AuditUserAdd, u.Username, map[string]string{"groups": strings.Join(u.Groups, ",")})
	}
	return viewOf(u), err
}

func (l localAdmin) List(ctx context.Context) ([]userView, error) {
	us, err := l.users.List(ctx)
	out := make([]userView, len(us))
	for i, u := range us {
		out[i] = viewOf(u)
	}
	return out, err
}

func (l localAdmin) Get(ctx context.Context, name string) (userView, error) {
	u, err := l.users.Get(ctx, name)
	return viewOf(u), err
}

func (l localAdmin) SetPassword(ctx context.Context, name, password string) error {
	if err := l.users.SetPassword(ctx, name, password); err != nil {
		return err
	}
	l.record(ctx, activity.AuditUserPassword, name, nil)
	_, err := l.sessions.RevokeUser(ctx, name)
	return err
}

func (l localAdmin) SetDisabled(ctx context.Context, name string, disabled bool) error {
	if err := l.users.SetDisabled(ctx, name, disabled); err != nil {
		return err
	}
	action := activity.AuditUserEnable
	if disabled {
		action = activity.AuditUserDisable
	}
	l.record(ctx, action, name, nil)
	if disabled {
		_, err := l.sessions.RevokeUser(ctx, name)
		return err
	}
	return nil
}

func (l localAdmin) Delete(ctx context.Context, name string) error {
	if err := l.users.Delete(ctx, name); err != nil {
		return err
	}
	l.record(ctx, activity.AuditUserDelete, name, nil)
	_, err := l.sessions.RevokeUser(ctx, name)
	return err
}

// Wire error codes, so the CLI can tell the same errors apart on both paths.
const (
	codeUserExists   = "user_exists"
	codeUserNotFound = "user_not_found"
	codeWeakPassword = "weak_password"
	codeBadRequest   = "bad_request"
	codeInternal     = "internal"
)

type wireError struct {
	Code    string   `json:"error"`
	Message string   `json:"message"`
	Reasons []string `json:"reasons,omitempty"`
}

func toWire(err error) (int, wireError) {
	var pe *authn.PasswordPolicyError
	switch {
	case errors.Is(err, authn.ErrUserExists):
		return http.StatusConflict, wireError{Code: codeUserExists, Message: err.Error()}
	case errors.Is(err, authn.ErrUserNotFound):
		return http.StatusNotFound, wireError{Code: codeUserNotFound, Message: err.Error()}
	case errors.As(err, &pe):
		return http.StatusUnprocessableEntity, wireError{Code: codeWeakPassword, Message: err.Error(), Reasons: pe.Reasons}
	default:
		var bad badRequestError
		if errors.As(err, &bad) {
			return http.StatusBadRequest, wireError{Code: codeBadRequest, Message: err.Error()}
		}
		return http.StatusInternalServerError, wireError{Code: codeInternal, Message: err.Error()}
	}
}

func fromWire(w wireError) error {
	switch w.Code {
	case codeUserExists:
		return fmt.Errorf("%w (%s)", authn.ErrUserExists, w.Message)
	case codeUserNotFound:
		return fmt.Errorf("%w (%s)", authn.ErrUserNotFound, w.Message)
	case codeWeakPassword:
		return &authn.PasswordPolicyError{Reasons: w.Reasons}
	}
	return fmt.Errorf("keygate answered %s: %s", w.Code, w.Message)
}

type badRequestError struct{ error }

// socketReply writes an admin-socket answer: v, or the error as mapped
// by toWire.
func socketReply[W any](w http.ResponseWriter, v any, err error, toWire func(error) (int, W)) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status, we := toWire(err)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(we)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// socketDecode reads one JSON request of at most limit bytes.
func socketDecode(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequestError{fmt.Errorf("decode request: %w", err)}
	}
	return nil
}

// adminHandler serves userAdmin over HTTP.
func adminHandler(ua userAdmin) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) { socketReply(w, v, err, toWire) }
	decode := func(r *http.Request, v any) error { return socketDecode(r, v, 64<<10) }
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { reply(w, "pong", nil) })
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var nu authn.NewUser
		if err := decode(r, &nu); err != nil {
			reply(w, nil, err)
			return
		}
		u, err := ua.Add(r.Context(), nu)
		reply(w, u, err)
	})
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		us, err := ua.List(r.Context())
		reply(w, us, err)
	})
	mux.HandleFunc("GET /users/{name}", func(w http.ResponseWriter, r *http.Request) {
		u, err := ua.Get(r.Context(), r.PathValue("name"))
		reply(w, u, err)
	})
	mux.HandleFunc("PUT /users/{name}/password", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Password string `json:"password"`
		}
		if err := decode(r, &body); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, struct{}{}, ua.SetPassword(r.Context(), r.PathValue("name"), body.Password))
	})
	mux.HandleFunc("PUT /users/{name}/disabled", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Disabled bool `json:"disabled"`
		}
		if err := decode(r, &body); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, struct{}{}, ua.SetDisabled(r.Context(), r.PathValue("name"), body.Disabled))
	})
	mux.HandleFunc("DELETE /users/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, ua.Delete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /users/{name}/factors", func(w http.ResponseWriter, r *http.Request) {
		cs, err := ua.Factors(r.Context(), r.PathValue("name"))
		reply(w, cs, err)
	})
	mux.HandleFunc("POST /users/{name}/reset-factors", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			By string `json:"by"`
		}
		if err := decode(r, &body); err != nil {
			reply(w, nil, err)
			return
		}
		n, err := ua.ResetFactors(r.Context(), r.PathValue("name"), body.By)
		reply(w, map[string]int{"removed": n}, err)
	})
	mux.HandleFunc("POST /users/{name}/unlock", func(w http.ResponseWriter, r *http.Request) {
		was, err := ua.Unlock(r.Context(), r.PathValue("name"))
		reply(w, map[string]bool{"was_locked": was}, err)
	})
	mux.HandleFunc("POST /users/{name}/enroll-link", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			TTL string `json:"ttl"`
		}
		if err := decode(r, &body); err != nil {
			reply(w, nil, err)
			return
		}
		ttl, err := time.ParseDuration(body.TTL)
		if err != nil {
			reply(w, nil, badRequestError{fmt.Errorf("ttl: %w", err)})
			return
		}
		l, err := ua.EnrollLink(r.Context(), r.PathValue("name"), ttl)
		reply(w, l, err)
	})
	return mux
}

// startAdminSocket listens on path until the returned stop is called.
func (a *app) startAdminSocket(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := listenPrivateSocket(path)
	if err != nil {
		return nil, err
	}
	users := adminHandler(a.localAdmin())
	mux := http.NewServeMux()
	for _, p := range []string{"/users", "/users/", "/ping"} {
		mux.Handle(p, users)
	}
	a.adminOps(mux)
	a.policyOps(mux)
	srv := &http.Server{Handler: peerActor(mux, a.log), ReadHeaderTimeout: 5 * time.Second, ConnContext: withPeerCred}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = os.Remove(path)
	}, nil
}

// listenPrivateSocket listens on a unix socket at path that nobody but
// this OS user can reach at any moment.
//
// bind(2) creates the socket file with mode 0777 less the umask, and a
// chmod after it leaves a window in which another local user may connect
// (and a connection made then survives the chmod). Changing the umask
// around bind is no cure in Go: the umask is per process, and another
// goroutine creating a file or directory at that moment would get it too.
// So the socket is bound inside a fresh directory that MkdirTemp creates
// with mode 0700 in the same system call (nobody else can traverse it to
// reach the socket), made 0600 there, and then renamed to path: rename(2)
// moves the inode atomically, so path never names anything but a 0600
// socket (a stale socket left by a process that died is replaced in the
// same step; we hold the store's lock, so no live keygate uses it).
func listenPrivateSocket(path string) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".keygate-sock-")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	// A short name: unix socket paths are limited to 107 bytes.
	tmpPath := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	// The file moves away from tmpPath; stop removes path itself.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// peerCredKey carries the socket peer's credentials (SO_PEERCRED) in the
// connection's context.
type peerCredKey struct{}

// withPeerCred reads who is at the other end of an admin socket
// connection: the kernel's record of the connecting process (SO_PEERCRED),
// which that process cannot choose or forge.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerCredKey{}, *cred)
}

// peerActor makes the socket peer's OS user the actor of every request,
// for the audit log. A name the client sends (the X-Keygate-Admin header of
// older CLIs) is dropped: any local program could claim to be anyone. Only
// this OS user and root may use the socket (its mode lets nobody else
// connect; this check holds even if the mode were loosened by hand).
func peerActor(h http.Handler, log *slog.Logger) http.Handler {
	self := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(adminHeader)
		cred, ok := r.Context().Value(peerCredKey{}).(unix.Ucred)
		if !ok || (int(cred.Uid) != self && cred.Uid != 0) {
			if ok {
				log.Warn("admin socket: refused a connection from another OS user", "uid", cred.Uid, "pid", cred.Pid)
			} else {
				log.Warn("admin socket: refused a connection whose peer credentials could not be read")
			}
			socketReply(w, nil, errForbiddenPeer, func(err error) (int, wireError) {
				return http.StatusForbidden, wireError{Code: "forbidden", Message: err.Error()}
			})
			return
		}
		ctx := context.WithValue(r.Context(), actorKey{}, peerName(cred))
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

var errForbiddenPeer = errors.New("the admin socket serves only the OS user keygate runs as, and root")

// peerName names the OS user of a socket peer: the user name of its uid,
// plus the login it came from when that differs (root through sudo from
// alice reads "root (login alice)"). The login is the kernel's audit
// login uid of the process (/proc/PID/loginuid), which sudo and su keep
// and the process cannot change, unlike SUDO_USER.
func peerName(c unix.Ucred) string {
	name := uidName(c.Uid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/loginuid", c.Pid)); err == nil {
		if lu, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil && lu != 1<<32-1 && uint32(lu) != c.Uid {
			name += " (login " + uidName(uint32(lu)) + ")"
		}
	}
	return name
}

func uidName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil && cleanActor(u.Username) != "" {
		return cleanActor(u.Username)
	}
	return "uid " + id
}

// socketAdmin is the client side.
type socketAdmin struct{ hc *http.Client }

func newSocketAdmin(path string) socketAdmin {
	return socketAdmin{hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (s socketAdmin) do(ctx context.Context, method, p string, in, out any) error {
	return socketCall(ctx, s.hc, method, p, in, out, fromWire)
}

// socketCall sends one JSON request over the admin socket and decodes the
// answer into out, or the error (as W) through fromWire.
func socketCall[W any](ctx context.Context, hc *http.Client, method, p string, in, out any, fromWire func(W) error) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://keygate"+p, body)
	if err != nil {
		return err
	}
	// No actor header: the server names the OS user from the socket
	// itself (SO_PEERCRED), which a client cannot forge.
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var we W
		if err := json.NewDecoder(resp.Body).Decode(&we); err != nil {
			return fmt.Errorf("admin socket: status %d", resp.StatusCode)
		}
		return fromWire(we)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ping says whether a keygate answers on the socket.
func (s socketAdmin) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return s.do(ctx, http.MethodGet, "/ping", nil, nil)
}

func (s socketAdmin) Add(ctx context.Context, nu authn.NewUser) (userView, error) {
	var u userView
	return u, s.do(ctx, http.MethodPost, "/users", nu, &u)
}

func (s socketAdmin) List(ctx context.Context) ([]userView, error) {
	var us []userView
	return us, s.do(ctx, http.MethodGet, "/users", nil, &us)
}

func (s socketAdmin) Get(ctx context.Context, name string) (userView, error) {
	var u userView
	return u, s.do(ctx, http.MethodGet, "/users/"+url.PathEscape(name), nil, &u)
}

func (s socketAdmin) SetPassword(ctx context.Context, name, password string) error {
	return s.do(ctx, http.MethodPut, "/users/"+url.PathEscape(name)+"/password", map[string]string{"password": password}, nil)
}

func (s socketAdmin) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return s.do(ctx, http.MethodPut, "/users/"+url.PathEscape(name)+"/disabled", map[string]bool{"disabled": disabled}, nil)
}

func (s socketAdmin) Delete(ctx context.Context, name string) error {
	return s.do(ctx, http.MethodDelete, "/users/"+url.PathEscape(name), nil, nil)
}

func (s socketAdmin) Factors(ctx context.Context, name string) ([]factors.Credential, error) {
	var cs []factors.Credential
	return cs, s.do(ctx, http.MethodGet, "/users/"+url.PathEscape(name)+"/factors", nil, &cs)
}

func (s socketAdmin) ResetFactors(ctx context.Context, name, by string) (int, error) {
	var out struct {
		Removed int `json:"removed"`
	}
	err := s.do(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/reset-factors", map[string]string{"by": by}, &out)
	return out.Removed, err
}

func (s socketAdmin) Unlock(ctx context.Context, name string) (bool, error) {
	var out struct {
		WasLocked bool `json:"was_locked"`
	}
	err := s.do(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/unlock", nil, &out)
	return out.WasLocked, err
}

func (s socketAdmin) EnrollLink(ctx context.Context, name string, ttl time.Duration) (enrollLink, error) {
	var l enrollLink
	return l, s.do(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/enroll-link", map[string]string{"ttl": ttl.String()}, &l)
}

// Interface guards.
var (
	_ userAdmin = localAdmin{}
	_ userAdmin = socketAdmin{}
)
