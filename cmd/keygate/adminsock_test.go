package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"golang.org/x/sys/unix"

	adminsvc "github.com/keygate/keygate/authn/admin"
	adminweb "github.com/keygate/keygate/web/admin"
)

// The admin socket names the actor from the kernel (SO_PEERCRED): a
// client that claims to be someone else in the old header is ignored.
func TestAdminSocketActorIsThePeersOSUser(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := startDemo(t, data)
	sock := filepath.Join(data, "keygate.sock")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, "unix", sock)
	}}}
	body, _ := json.Marshal(map[string]string{"username": "forged", "password": "correct-horse-battery-9"})
	req, _ := http.NewRequest(http.MethodPost, "http://keygate/.keygate/api/admin/users", bytes.NewReader(body))
	req.Header.Set(adminHeader, "mallory")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add over the socket: %d", resp.StatusCode)
	}
	// The CLI itself sends no actor at all and is still named.
	if _, errOut, rc := run(t, "", "user", "disable", "forged", "--config", demoConfigFile(t, data)); rc != 0 {
		t.Fatalf("user disable: rc=%d %s", rc, errOut)
	}
	d.stop(t)

	key, err := badgerstore.LoadKey(data+".key", "")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := badgerstore.Open(badgerstore.Options{Path: data, EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	entries, err := activity.NewAudit(kv, nil, nil).Recent(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	me := uidName(uint32(os.Getuid()))
	if len(entries) != 2 {
		t.Fatalf("audit: %+v", entries)
	}
	for _, e := range entries {
		if e.Target != "forged" || !strings.HasPrefix(e.Admin, me) || strings.Contains(e.Admin, "mallory") {
			t.Fatalf("audit entry names %q for %s, want the OS user %q: %+v", e.Admin, e.Action, me, e)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}

// The socket is 0600 from the first moment its path names it.
//
// How this proves there is no window: an inotify watch on the directory
// is armed before the listener starts and records every name that appears
// there and how. The socket's name must appear only by IN_MOVED_TO (a
// rename of an inode that already existed), never by IN_CREATE (bind)
// nor be followed by IN_ATTRIB (a chmod after the fact): so before the
// rename the path named nothing, and the inode renamed into place had its
// final mode, as stat confirms. Where the bind happened, a directory
// created 0700 by mkdir itself (the other IN_CREATE event), nobody else
// can traverse to reach it.
func TestAdminSocketCreatedWithItsFinalMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.sock")
	// A stale socket from a process that died is replaced in the same step.
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		t.Fatal(err)
	}
	ln, err := listenPrivateSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	var sockEvents []uint32
	sawPrivateDir := false
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafePointer(buf[off:]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		off += unix.SizeofInotifyEvent + int(ev.Len)
		switch {
		case name == "keygate.sock":
			sockEvents = append(sockEvents, ev.Mask)
		case strings.HasPrefix(name, ".keygate-sock-") && ev.Mask&unix.IN_CREATE != 0 && ev.Mask&unix.IN_ISDIR != 0:
			sawPrivateDir = true
		}
	}
	if len(sockEvents) != 1 || sockEvents[0]&unix.IN_MOVED_TO == 0 {
		t.Fatalf("the socket's name appeared by events %x, want exactly one IN_MOVED_TO (%x)", sockEvents, unix.IN_MOVED_TO)
	}
	if !sawPrivateDir {
		t.Fatal("the socket was not bound in a private directory")
	}
	// The private directory is gone, and the socket answers.
	if m, _ := filepath.Glob(filepath.Join(dir, ".keygate-sock-*")); len(m) != 0 {
		t.Fatalf("left behind: %v", m)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	c.Close()
}

// unsafePointer reads an inotify event header in place (the kernel writes
// them aligned in the buffer).
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// The socket's guard refuses a peer that is neither keygate's OS user nor
// root, and one whose credentials could not be read, in the admin API's
// error format, before the API sees the request; a peer it lets through
// is the actor (channel cli), whatever header it sends.
func TestAdminSocketRefusesOtherOSUsers(t *testing.T) {
	var seen []adminsvc.Actor
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := adminweb.ActorFrom(r.Context())
		seen = append(seen, a)
		w.WriteHeader(http.StatusNoContent)
	})
	var logs bytes.Buffer
	guard := peerActor(api, slog.New(slog.NewTextHandler(&logs, nil)))
	other := uint32(os.Getuid() + 4242)
	if other == 0 {
		other = 4242
	}
	for _, tc := range []struct {
		name string
		cred *unix.Ucred
		want int
	}{
		{"another OS user", &unix.Ucred{Pid: 1, Uid: other, Gid: other}, http.StatusForbidden},
		{"no credentials", nil, http.StatusForbidden},
		{"keygate's OS user", &unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}, http.StatusNoContent},
	} {
		req := httptest.NewRequest(http.MethodPost, "http://keygate/.keygate/api/admin/users/bob/disable", nil)
		req.Header.Set(adminHeader, "mallory")
		if tc.cred != nil {
			req = req.WithContext(context.WithValue(req.Context(), peerCredKey{}, *tc.cred))
		}
		rec := httptest.NewRecorder()
		before := len(seen)
		guard.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Fatalf("%s: %d %s", tc.name, rec.Code, rec.Body)
		}
		if tc.want == http.StatusForbidden {
			var out map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out["error"] != "forbidden" || out["message"] == "" {
				t.Fatalf("%s: refusal %q is not the API's error format", tc.name, rec.Body)
			}
			if len(seen) != before {
				t.Fatalf("%s: the API saw a refused request", tc.name)
			}
			continue
		}
		if a := seen[len(seen)-1]; a.Channel != adminsvc.ChannelCLI || a.Name != peerName(*tc.cred) || strings.Contains(a.Name, "mallory") {
			t.Fatalf("%s: actor %+v", tc.name, a)
		}
	}
	if !strings.Contains(logs.String(), "refused a connection from another OS user") {
		t.Fatalf("refusal not logged: %s", logs.String())
	}
}
