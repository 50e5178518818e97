package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/keygate/keygate/authn/store/badgerstore"
)

// adminOps registers the operational endpoints of the admin socket
// (backup, …) next to the user commands.
func (a *app) adminOps(mux *http.ServeMux) {
	mux.HandleFunc("POST /backup", a.serveBackup)
}

// serveBackup streams an encrypted backup of the open store (see
// backupRequest). Once bytes have gone out the status is 200 and cannot
// change, so a failure after that aborts the connection: the client sees a
// broken stream (and would also find the file incomplete when it verifies
// it), never a short file that looks whole.
func (a *app) serveBackup(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code string, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(wireError{Code: code, Message: err.Error()})
	}
	var req backupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(http.StatusBadRequest, codeBadRequest, fmt.Errorf("decode request: %w", err))
		return
	}
	if len(req.Key) < badgerstore.MinBackupKeySize {
		fail(http.StatusBadRequest, codeBadRequest, fmt.Errorf("backup key is %d bytes; want at least %d", len(req.Key), badgerstore.MinBackupKeySize))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countingWriter{w: w}
	if err := a.kv.Backup(cw, req.Key); err != nil {
		a.log.Error("backup over the admin socket failed", "bytes_sent", cw.n, "err", err)
		if cw.n == 0 {
			fail(http.StatusInternalServerError, codeInternal, err)
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
