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
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/web"
	adminweb "github.com/keygate/keygate/web/admin"
)

// Badger lets one process open a data directory, so while keygate serves,
// the CLI's admin commands reach it through a unix socket that only the
// owner of the data directory may open (mode 0600 from its first moment,
// see listenPrivateSocket). The socket serves the admin HTTP API itself —
// the very handler /.keygate/api/admin/ serves on the web (web.AdminAPI) —
// behind a guard of its own: instead of a session, the peer's OS user as
// the kernel reports it (SO_PEERCRED), never a name the client sends, is
// the actor (channel cli). Next to it are the socket's operations (ping,
// backup: adminsock_ops.go).

// startAdminSocket listens on path until the returned stop is called.
func (a *app) startAdminSocket(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	api := a.web.AdminAPI()
	if api == nil {
		return nil, errors.New("admin socket: the admin area is off, so there is no admin API to serve")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := listenPrivateSocket(path)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(adminweb.APIPrefix, api)
	a.adminOps(mux)
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

// peerActor makes the socket peer's OS user the actor of every request
// (channel cli), for the service and the audit log. A name the client sends
// (the X-Keygate-Admin header of older CLIs) is dropped: any local program
// could claim to be anyone. Only this OS user and root may use the socket
// (its mode lets nobody else connect; this check holds even if the mode
// were loosened by hand). A refusal is the API's error format.
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
			writeAPIError(w, http.StatusForbidden, "forbidden", errForbiddenPeer.Error())
			return
		}
		actor := adminsvc.Actor{Name: peerName(cred), Channel: adminsvc.ChannelCLI}
		h.ServeHTTP(w, r.WithContext(adminweb.WithActor(r.Context(), actor)))
	})
}

// adminHeader is where the CLI of round 1 named its OS user. The socket
// takes the actor from the kernel (peerActor) and drops this header before
// any handler sees it.
const adminHeader = "X-Keygate-Admin"

// writeAPIError answers in the admin API's error format, for the socket's
// own refusals and operations.
func writeAPIError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": message})
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

// adminClient is the keygate command's side of the admin API: plain
// net/http, over the socket of a running keygate or, when none runs, to
// the same handler built in this process on the data directory (so the
// command speaks one API either way). It decodes answers and errors; what
// to print is the commands'.
type adminClient struct {
	hc *http.Client
}

// newSocketAdmin is a client of the running keygate's admin socket.
func newSocketAdmin(path string) *adminClient {
	return &adminClient{hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// localAdmin is a client of the admin API built on this open app, as the
// OS user at the terminal (channel cli), for the command on a stopped
// data directory.
func (a *app) localAdmin() *adminClient {
	api, err := web.NewAdminAPI(a.adminService(), a.portalBase(), a.log)
	if err != nil {
		return &adminClient{hc: &http.Client{Transport: failingTransport{err}}}
	}
	actor := adminsvc.Actor{Name: osAdmin(), Channel: adminsvc.ChannelCLI}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r.WithContext(adminweb.WithActor(r.Context(), actor)))
	})
	return &adminClient{hc: &http.Client{Transport: handlerTransport{h}}}
}

// handlerTransport serves a request with a handler in this process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type failingTransport struct{ err error }

func (t failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, t.err }

// apiError is an error answer of the admin API: its status, stable code,
// message and the fields some errors add.
type apiError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
	// invalid_policy
	Problems []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"problems"`
	// version_mismatch
	CurrentVersion int `json:"current_version"`
	// weak_password
	Reasons []string `json:"reasons"`
}

func (e *apiError) Error() string {
	msg := strings.ReplaceAll(e.Code, "_", " ") + ": " + e.Message
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// readAPIError decodes an error answer.
func readAPIError(resp *http.Response) error {
	e := &apiError{Status: resp.StatusCode}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(e); err != nil || e.Code == "" {
		return fmt.Errorf("keygate answered status %d", resp.StatusCode)
	}
	return e
}

// call sends one request to the admin API (path below its prefix) and
// decodes the answer into out. in is sent as JSON; header adds headers.
func (c *adminClient) call(ctx context.Context, method, path string, in, out any, header http.Header) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://keygate"+adminweb.APIPrefix+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.Header, readAPIError(resp)
	}
	if out == nil {
		return resp.Header, nil
	}
	if s, ok := out.(*string); ok {
		b, err := io.ReadAll(resp.Body)
		*s = string(b)
		return resp.Header, err
	}
	return resp.Header, json.NewDecoder(resp.Body).Decode(out)
}

func (c *adminClient) get(ctx context.Context, path string, out any) error {
	_, err := c.call(ctx, http.MethodGet, path, nil, out, nil)
	return err
}

func (c *adminClient) post(ctx context.Context, path string, in, out any) error {
	_, err := c.call(ctx, http.MethodPost, path, in, out, nil)
	return err
}

// ifMatch names the policy version a change starts from.
func ifMatch(version int) http.Header {
	return http.Header{"If-Match": {`"` + strconv.Itoa(version) + `"`}}
}

// ping says whether a keygate answers on the socket.
func (c *adminClient) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://keygate/ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin socket: ping answered %d", resp.StatusCode)
	}
	return nil
}

// enrollLink is an admin's one-time enrolment link.
type enrollLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// EnrollLink issues a one-time enrolment link.
func (c *adminClient) EnrollLink(ctx context.Context, name string, ttl time.Duration) (enrollLink, error) {
	var l enrollLink
	return l, c.post(ctx, "users/"+url.PathEscape(name)+"/enroll-link", map[string]string{"ttl": ttl.String()}, &l)
}

// withAdmin runs fn with a client of the running keygate (through its
// admin socket) or, when none runs, of the data directory opened here.
func withAdmin(ctx context.Context, g *globals, fn func(*adminClient) error) error {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return err
	}
	return withAdminConfig(ctx, cfg, fn)
}
