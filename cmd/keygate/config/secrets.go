package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretFile bounds how much of a *_file is read: a key or a password is
// a few hundred bytes at most, and pointing the key at /dev/zero or a large
// file by mistake should fail, not eat memory.
const maxSecretFile = 64 << 10

// Where a secret came from, as EncryptionKeyMaterial and SMTPPassword report
// it in their source result (followed by the variable name or file path).
const (
	SourceEnv  = "env"
	SourceFile = "file"
)

// EncryptionKeyMaterial returns the storage encryption key as text, from
// KEYGATE_STORAGE_ENCRYPTION_KEY or else from storage.encryption_key_file,
// read now (not at Parse) so that a rotated file is picked up and the value
// does not sit in the Config longer than needed. source is "env NAME" or
// "file PATH", and empty (with an empty value) when no key is configured.
// Trailing newlines of a file are dropped; turning the text into key bytes
// (hex, base64, a KDF) is the storage layer's business.
func (c *Config) EncryptionKeyMaterial() (source string, value string, err error) {
	return secretMaterial(c.Storage.EncryptionKey, "storage.encryption_key", c.Storage.EncryptionKeyFile)
}

// SMTPPassword returns the SMTP password from KEYGATE_EMAIL_SMTP_PASSWORD or
// else from email.smtp.password_file, like EncryptionKeyMaterial.
func (c *Config) SMTPPassword() (source string, value string, err error) {
	return secretMaterial(c.Email.SMTP.Password, "email.smtp.password", c.Email.SMTP.PasswordFile)
}

// PostgresDSN returns the database connection string from
// KEYGATE_STORAGE_POSTGRES_DSN or else storage.postgres.dsn_file.
func (c *Config) PostgresDSN() (source string, value string, err error) {
	return secretMaterial(c.Storage.Postgres.DSN, "storage.postgres.dsn", c.Storage.Postgres.DSNFile)
}

func secretMaterial(env Secret, path, file string) (string, string, error) {
	if env != "" {
		return SourceEnv + " " + envName(path), string(env), nil
	}
	if file == "" {
		return "", "", nil
	}
	v, err := readSecretFile(file)
	if err != nil {
		return "", "", fmt.Errorf("%s_file: %w", path, err)
	}
	return SourceFile + " " + file, v, nil
}

// readSecretFile reads a secret written by `echo`, `openssl rand -hex` or a
// secrets manager: trailing CR/LF are dropped, other bytes kept.
func readSecretFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("secret file %s: %w", name, errSecretTooLarge)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s: %w", name, errSecretEmpty)
	}
	return v, nil
}

var (
	errSecretTooLarge = errors.New("larger than 64 KiB; is this the right file?")
	errSecretEmpty    = errors.New("empty")
)
