package pgstore

// SetBeforeCommit installs a hook that runs in every writing transaction
// after it took its seq and before it commits.
func SetBeforeCommit(s *Store, f func(seq int64)) { s.beforeCommit = f }
