package badgerstore

// # Backups
//
// Badger's own DB.Backup writes plaintext even from an encrypted database,
// and a backup file travels further than the data directory (backup hosts,
// object storage, laptops), so keygate encrypts its backups itself.
//
// File format, version 1:
//
//	header   "KGBACKUP" | version (1 byte) | created (8, Unix seconds) |
//	         salt (32) | key check (32) | CRC-32 of the preceding bytes (4)
//	frames   word (4: bit 31 = final frame, bits 0-30 = ciphertext length) |
//	         AES-256-GCM ciphertext of at most 64 KiB of plaintext
//
// All integers are big endian. The AES key and the key check are
// HKDF-SHA256(key, salt, "keygate backup v1"), so the bytes that encrypt a
// backup are never the storage key's bytes, and the random salt makes every
// backup's AES key unique, which lets the GCM nonce be the frame counter.
// The key check tells a wrong key from a damaged file before anything is
// decrypted; the CRC tells accidental damage of the header from a wrong key.
// Every frame's associated data is the header plus the frame's final flag,
// so a changed header, a frame moved, dropped or repeated (its counter no
// longer matches), a file cut at a frame boundary (no final frame) and
// anything appended after the final frame are all detected.
//
// The plaintext is the store's live records in key order, read in one
// Badger transaction (one read timestamp, so the backup is consistent while
// writes go on):
//
//	record   'R' | uvarint key length | key | uvarint value length | value | uvarint expiresAt
//	end      'E' | uvarint number of records
//
// It is keygate's own format rather than Badger's protobuf stream: it holds
// exactly what the store needs (the store's versions live inside the values),
// and a backup stays restorable after a Badger major upgrade.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Backup and restore errors; match them with errors.Is.
var (
	// ErrBackupKey: the key does not open the backup (the storage key of
	// another installation, or the wrong --key-file).
	ErrBackupKey = errors.New("badgerstore: the key does not open this backup")
	// ErrBackupCorrupt: the backup is truncated, damaged, tampered with, or
	// not a keygate backup at all.
	ErrBackupCorrupt = errors.New("badgerstore: the backup is truncated, damaged or was tampered with")
	// ErrRestoreNotEmpty: Restore only writes into an empty directory.
	ErrRestoreNotEmpty = errors.New("badgerstore: the restore target is not empty")
)

const (
	backupMagic     = "KGBACKUP"
	backupVersion   = 1
	backupSaltLen   = 32
	backupCheckLen  = 32
	backupHeaderLen = len(backupMagic) + 1 + 8 + backupSaltLen + backupCheckLen + 4
	backupHKDFInfo  = "keygate backup v1"
	// backupFrame is the plaintext per frame: small enough to verify and
	// hold in memory, big enough that the 20 bytes per frame do not matter.
	backupFrame     = 64 << 10
	backupFinalBit  = 1 << 31
	backupGCMTag    = 16
	backupMaxCipher = backupFrame + backupGCMTag

	recordTag = 'R'
	endTag    = 'E'
	// Limits for lengths read back: Badger's own key limit, and a value
	// bound far above anything keygate stores (values are authenticated, so
	// this only guards against our own bugs, not against attackers).
	maxRecordKey   = 65000
	maxRecordValue = 1 << 30

	// MinBackupKeySize is the shortest key Backup and Restore accept.
	MinBackupKeySize = 16

	// restoreStaging is where Restore builds the database inside the target
	// directory before moving it into place (same filesystem, so the moves
	// are renames, and a mounted volume as target works).
	restoreStaging = ".keygate-restore"
)

// BackupInfo describes a backup that VerifyBackup read to its end.
type BackupInfo struct {
	Created time.Time
	Records uint64
}

// Backup writes an encrypted, consistent backup of the whole store to w
// while the store stays in use. key (at least MinBackupKeySize bytes; the
// storage key is fine, it is not used as is) is needed to restore it. The
// backup is complete only when Backup returns nil; a writer that fails half
// way leaves a file that Restore refuses.
func (s *Store) Backup(w io.Writer, key []byte) error {
	if err := s.enter(context.Background()); err != nil {
		return fmt.Errorf("badgerstore: backup: %w", err)
	}
	defer s.leave()
	bw, err := newBackupWriter(w, key, time.Now())
	if err != nil {
		return err
	}
	var n uint64
	// One read-only transaction: every record is read at the same
	// timestamp, whatever is written meanwhile.
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error { return bw.record(item.Key(), v, item.ExpiresAt()) }); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err == nil {
		err = bw.end(n)
	}
	if err != nil {
		return fmt.Errorf("badgerstore: backup: %w", err)
	}
	return nil
}

// VerifyBackup reads a whole backup and checks every frame without writing
// anything: ErrBackupKey for a wrong key, ErrBackupCorrupt for a damaged or
// incomplete file.
func VerifyBackup(r io.Reader, key []byte) (BackupInfo, error) {
	br, err := openBackup(r, key)
	if err != nil {
		return BackupInfo{}, err
	}
	n, err := readRecords(br, func([]byte, []byte, uint64) error { return nil })
	if err != nil {
		return BackupInfo{}, err
	}
	return BackupInfo{Created: br.created, Records: n}, nil
}

// Restore writes the backup read from r into the empty (or missing)
// directory opts.Path, as a database encrypted with opts.EncryptionKey
// (which may differ from the key of the backed-up store: restoring is also
// how the storage key is changed). key opens the backup. The database is
// built in a staging directory and moved into place only once the whole
// backup was read and authenticated, so a wrong key or a damaged file
// leaves the target as it was. Afterwards Open(opts) opens it normally.
func Restore(opts Options, r io.Reader, key []byte) (err error) {
	if opts.Path == "" {
		return errors.New("badgerstore: restore: no data directory given")
	}
	switch len(opts.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("badgerstore: restore: encryption key is %d bytes; want 32 (AES-256), or 16 or 24", len(opts.EncryptionKey))
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return fmt.Errorf("badgerstore: restore: data directory %q: %w", opts.Path, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	created, err := prepareRestoreTarget(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && created {
			_ = os.Remove(path) // only if still empty; never removes restored data
		}
	}()
	// The header and the key are checked before anything is written.
	br, err := openBackup(r, key)
	if err != nil {
		return err
	}
	staging := filepath.Join(path, restoreStaging)
	db, err := badger.Open(badgerOptions(staging, opts.EncryptionKey, logger))
	if err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("badgerstore: restore: create database: %w", err)
	}
	loadErr := loadBackup(db, br)
	if err := errors.Join(loadErr, db.Close()); err != nil {
		_ = os.RemoveAll(staging)
		return err
	}
	if err := moveInto(staging, path); err != nil {
		return fmt.Errorf("badgerstore: restore: move the restored database into %s: %w (empty the directory and restore again)", path, err)
	}
	return nil
}

// prepareRestoreTarget creates path if missing (created = true) and refuses
// a directory that holds anything: restoring over live data would mix two
// databases.
func prepareRestoreTarget(path string) (created bool, err error) {
	entries, err := os.ReadDir(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(path, 0o700); err != nil {
			return false, fmt.Errorf("badgerstore: restore: create %s: %w", path, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("badgerstore: restore: %s: %w", path, err)
	case len(entries) > 0:
		return false, fmt.Errorf("%w: %s holds %d entries (%s, …); restore into an empty or new directory", ErrRestoreNotEmpty, path, len(entries), entries[0].Name())
	}
	return false, nil
}

// loadBackup writes every record of the backup into db. It fails on the
// first bad frame; the caller then throws db away.
func loadBackup(db *badger.DB, br *backupReader) error {
	wb := db.NewWriteBatch()
	_, err := readRecords(br, func(k, v []byte, expiresAt uint64) error {
		e := badger.NewEntry(k, v)
		e.ExpiresAt = expiresAt
		return wb.SetEntry(e)
	})
	if err != nil {
		wb.Cancel()
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badgerstore: restore: write: %w", err)
	}
	return nil
}

// moveInto renames every file of the closed staging database into dir and
// removes staging.
func moveInto(staging, dir string) error {
	entries, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(staging); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// deriveBackupKeys returns the AES-256 key and the key check for salt.
func deriveBackupKeys(key, salt []byte) (aesKey, check []byte, err error) {
	if len(key) < MinBackupKeySize {
		return nil, nil, fmt.Errorf("badgerstore: backup key is %d bytes; want at least %d", len(key), MinBackupKeySize)
	}
	okm, err := hkdf.Key(sha256.New, key, salt, backupHKDFInfo, 32+backupCheckLen)
	if err != nil {
		return nil, nil, fmt.Errorf("badgerstore: derive backup key: %w", err)
	}
	return okm[:32], okm[32:], nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// frameAAD is the associated data of each frame: the header and the final
// flag (one slice per flag value, built once).
func frameAAD(header []byte) [2][]byte {
	return [2][]byte{append(bytes.Clone(header), 0), append(bytes.Clone(header), 1)}
}

func frameNonce(ctr uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], ctr)
	return n[:]
}

// backupWriter encrypts the plaintext stream frame by frame.
type backupWriter struct {
	w     io.Writer
	aead  cipher.AEAD
	aad   [2][]byte
	ctr   uint64
	buf   []byte // pending plaintext, at most backupFrame
	out   []byte // one sealed frame
	varin [binary.MaxVarintLen64]byte
}

func newBackupWriter(w io.Writer, key []byte, now time.Time) (*backupWriter, error) {
	salt := make([]byte, backupSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("badgerstore: backup salt: %w", err)
	}
	aesKey, check, err := deriveBackupKeys(key, salt)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(aesKey)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: backup cipher: %w", err)
	}
	h := make([]byte, 0, backupHeaderLen)
	h = append(h, backupMagic...)
	h = append(h, backupVersion)
	h = binary.BigEndian.AppendUint64(h, uint64(now.Unix()))
	h = append(h, salt...)
	h = append(h, check...)
	h = binary.BigEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("badgerstore: backup: write header: %w", err)
	}
	return &backupWriter{
		w: w, aead: aead, aad: frameAAD(h),
		buf: make([]byte, 0, backupFrame),
		out: make([]byte, 4, 4+backupMaxCipher),
	}, nil
}

// write adds plaintext; a full frame is sealed only when more data follows,
// so that the last frame is always the one marked final.
func (b *backupWriter) write(p []byte) error {
	for len(p) > 0 {
		if len(b.buf) == backupFrame {
			if err := b.seal(false); err != nil {
				return err
			}
		}
		n := min(len(p), backupFrame-len(b.buf))
		b.buf = append(b.buf, p[:n]...)
		p = p[n:]
	}
	return nil
}

func (b *backupWriter) uvarint(v uint64) error {
	return b.write(binary.AppendUvarint(b.varin[:0], v))
}

func (b *backupWriter) record(key, value []byte, expiresAt uint64) error {
	if err := b.write([]byte{recordTag}); err != nil {
		return err
	}
	if err := b.uvarint(uint64(len(key))); err != nil {
		return err
	}
	if err := b.write(key); err != nil {
		return err
	}
	if err := b.uvarint(uint64(len(value))); err != nil {
		return err
	}
	if err := b.write(value); err != nil {
		return err
	}
	return b.uvarint(expiresAt)
}

// end writes the end marker and the final frame.
func (b *backupWriter) end(records uint64) error {
	if err := b.write([]byte{endTag}); err != nil {
		return err
	}
	if err := b.uvarint(records); err != nil {
		return err
	}
	return b.seal(true)
}

func (b *backupWriter) seal(final bool) error {
	flag := 0
	if final {
		flag = 1
	}
	frame := b.aead.Seal(b.out[:4], frameNonce(b.ctr), b.buf, b.aad[flag])
	word := uint32(len(frame) - 4)
	if final {
		word |= backupFinalBit
	}
	binary.BigEndian.PutUint32(frame[:4], word)
	if _, err := b.w.Write(frame); err != nil {
		return fmt.Errorf("write frame %d: %w", b.ctr, err)
	}
	b.ctr++
	b.buf = b.buf[:0]
	return nil
}

// backupReader decrypts and authenticates frame by frame; it is an
// io.Reader of the plaintext that ends with io.EOF only after the final
// frame and nothing after it.
type backupReader struct {
	r       io.Reader
	aead    cipher.AEAD
	aad     [2][]byte
	created time.Time
	ctr     uint64
	frame   []byte
	plain   []byte
	off     int
	final   bool
	err     error
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBackupCorrupt}, args...)...)
}

// openBackup reads and checks the header.
func openBackup(r io.Reader, key []byte) (*backupReader, error) {
	h := make([]byte, backupHeaderLen)
	if n, err := io.ReadFull(r, h); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corrupt("%d bytes are too short for a keygate backup", n)
		}
		return nil, fmt.Errorf("badgerstore: read backup: %w", err)
	}
	if string(h[:len(backupMagic)]) != backupMagic {
		return nil, corrupt("not a keygate backup")
	}
	if v := h[len(backupMagic)]; v != backupVersion {
		return nil, fmt.Errorf("badgerstore: backup format version %d; this keygate reads version %d", v, backupVersion)
	}
	body := h[:backupHeaderLen-4]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(h[backupHeaderLen-4:]) {
		return nil, corrupt("the header is damaged")
	}
	off := len(backupMagic) + 1
	created := time.Unix(int64(binary.BigEndian.Uint64(h[off:])), 0)
	off += 8
	salt := h[off : off+backupSaltLen]
	check := h[off+backupSaltLen : off+backupSaltLen+backupCheckLen]
	aesKey, want, err := deriveBackupKeys(key, salt)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(check, want) != 1 {
		return nil, ErrBackupKey
	}
	aead, err := newGCM(aesKey)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: backup cipher: %w", err)
	}
	return &backupReader{
		r: r, aead: aead, aad: frameAAD(h), created: created,
		frame: make([]byte, backupMaxCipher), plain: make([]byte, 0, backupFrame),
	}, nil
}

func (b *backupReader) Read(p []byte) (int, error) {
	for b.off == len(b.plain) {
		if b.err != nil {
			return 0, b.err
		}
		if b.final {
			b.err = b.atEnd()
			return 0, b.err
		}
		if err := b.next(); err != nil {
			b.err = err
			return 0, err
		}
	}
	n := copy(p, b.plain[b.off:])
	b.off += n
	return n, nil
}

// atEnd checks that nothing follows the final frame.
func (b *backupReader) atEnd() error {
	var one [1]byte
	n, err := io.ReadFull(b.r, one[:])
	switch {
	case n > 0:
		return corrupt("data follows the final frame")
	case errors.Is(err, io.EOF):
		return io.EOF
	default:
		return fmt.Errorf("badgerstore: read backup: %w", err)
	}
}

func (b *backupReader) next() error {
	var w [4]byte
	if _, err := io.ReadFull(b.r, w[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("truncated after frame %d: the final frame is missing", b.ctr)
		}
		return fmt.Errorf("badgerstore: read backup: %w", err)
	}
	word := binary.BigEndian.Uint32(w[:])
	final := word&backupFinalBit != 0
	n := int(word &^ backupFinalBit)
	if n < backupGCMTag || n > backupMaxCipher {
		return corrupt("frame %d has an impossible length %d", b.ctr, n)
	}
	if _, err := io.ReadFull(b.r, b.frame[:n]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("truncated inside frame %d", b.ctr)
		}
		return fmt.Errorf("badgerstore: read backup: %w", err)
	}
	flag := 0
	if final {
		flag = 1
	}
	plain, err := b.aead.Open(b.plain[:0], frameNonce(b.ctr), b.frame[:n], b.aad[flag])
	if err != nil {
		return corrupt("frame %d does not authenticate (changed, moved or from another backup)", b.ctr)
	}
	b.plain, b.off, b.final = plain, 0, final
	b.ctr++
	return nil
}

// readRecords parses the plaintext, calling fn with freshly allocated key
// and value slices (fn may keep them), and checks the end marker and that
// the stream ends right after it.
func readRecords(br *backupReader, fn func(key, value []byte, expiresAt uint64) error) (uint64, error) {
	r := bufio.NewReaderSize(br, backupFrame)
	// A read error of the frame layer is the error to report; a parse error
	// of authenticated plaintext means a bug or a forged key, reported as
	// corruption all the same.
	fail := func(what string, err error) error {
		if br.err != nil && !errors.Is(br.err, io.EOF) {
			return br.err
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("the records end inside %s", what)
		}
		return corrupt("%s: %v", what, err)
	}
	readBytes := func(limit uint64, what string) ([]byte, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fail(what+" length", err)
		}
		if n > limit {
			return nil, corrupt("%s of %d bytes", what, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fail(what, err)
		}
		return b, nil
	}
	var count uint64
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return count, fail("a record tag", err)
		}
		switch tag {
		case recordTag:
			k, err := readBytes(maxRecordKey, "a key")
			if err != nil {
				return count, err
			}
			v, err := readBytes(maxRecordValue, "a value")
			if err != nil {
				return count, err
			}
			exp, err := binary.ReadUvarint(r)
			if err != nil {
				return count, fail("an expiry", err)
			}
			if err := fn(k, v, exp); err != nil {
				return count, fmt.Errorf("badgerstore: restore record %d: %w", count, err)
			}
			count++
		case endTag:
			want, err := binary.ReadUvarint(r)
			if err != nil {
				return count, fail("the end marker", err)
			}
			if want != count {
				return count, corrupt("%d records, the end marker says %d", count, want)
			}
			if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
				if err == nil {
					return count, corrupt("data follows the end marker")
				}
				return count, err
			}
			return count, nil
		default:
			return count, corrupt("unknown record tag %#x", tag)
		}
	}
}
