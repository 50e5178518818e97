package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
)

// adminOps registers the operational endpoints of the admin socket next
// to the admin API: ping (is a keygate there?) and backup (a stream of the
// open store, which only this process can read).
func (a *app) adminOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "pong\n")
	})
	mux.HandleFunc("POST /backup", a.serveBackup)
}

// serveBackup streams an encrypted backup of the open store (see
// backupRequest). Once bytes have gone out the status is 200 and cannot
// change, so a failure after that aborts the connection: the client sees a
// broken stream (and would also find the file incomplete when it verifies
// it), never a short file that looks whole.
func (a *app) serveBackup(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code string, err error) { writeAPIError(w, status, code, err.Error()) }
	var req backupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(http.StatusBadRequest, "bad_request", fmt.Errorf("decode request: %w", err))
		return
	}
	if len(req.Key) < badgerstore.MinBackupKeySize {
		fail(http.StatusBadRequest, "bad_request", fmt.Errorf("backup key is %d bytes; want at least %d", len(req.Key), badgerstore.MinBackupKeySize))
		return
	}
	b, ok := a.kv.(store.Backuper)
	if !ok {
		fail(http.StatusNotImplemented, "not_supported", fmt.Errorf("a %s store is not backed up through a replica's socket: `keygate backup` reads the database itself (or use pg_dump for a point-in-time copy; values stay sealed with the storage key)", backendName(a.cfg)))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countingWriter{w: w}
	if err := b.Backup(cw, req.Key); err != nil {
		a.log.Error("backup over the admin socket failed", "bytes_sent", cw.n, "err", err)
		if cw.n == 0 {
			fail(http.StatusInternalServerError, "internal", err)
			return
		}
		panic(http.ErrAbortHandler)
	}
	a.log.Info("backup streamed over the admin socket", "bytes", cw.n)
}

// countingWriter counts what went out.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
