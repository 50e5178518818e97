package badgerstore

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/authn/store"
)

// Size returns the bytes on disk of the LSM tree (.sst tables) and of the
// value log (.vlog files), Badger's two parts, for the store-size metric.
//
// Badger's own db.Size() reads counters that exist only with its metrics
// on, which we turn off (they are process-wide expvars), so Size walks the
// directory itself: a few dozen files for keygate's data. An error (a file
// removed by compaction meanwhile) skips that file: the figure is a gauge,
// not an invariant.
func (s *Store) Size() (lsm, vlog int64) {
	_ = filepath.WalkDir(s.path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var n *int64
		switch {
		case strings.HasSuffix(d.Name(), ".sst"):
			n = &lsm
		case strings.HasSuffix(d.Name(), ".vlog"):
			n = &vlog
		default:
			return nil
		}
		if info, err := d.Info(); err == nil {
			*n += info.Size()
		}
		return nil
	})
	return lsm, vlog
}

// StorageSize is Size for the store-size metric of any backend
// (store.Sizer): the parts "lsm" and "vlog".
func (s *Store) StorageSize(context.Context) ([]store.SizePart, error) {
	lsm, vlog := s.Size()
	return []store.SizePart{{Part: "lsm", Bytes: lsm}, {Part: "vlog", Bytes: vlog}}, nil
}
