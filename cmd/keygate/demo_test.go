package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/cmd/keygate/config"
)

// examples/demo.yaml is what the README's tour hands to the CLI; it must
// describe the demo keygate really runs.
func TestDemoConfigMatchesExampleFile(t *testing.T) {
	example, err := filepath.Abs(filepath.Join("..", "..", "examples", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The file's paths are relative to the repository root, where the demo
	// creates its key; stand in a directory that has one.
	t.Chdir(t.TempDir())
	if err := os.WriteFile("keygate-data.key", []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := config.Load(example, nil)
	if err != nil {
		t.Fatalf("examples/demo.yaml: %v", err)
	}
	built := demoConfig("127.0.0.1:9091", "./keygate-data", "http://127.0.0.1:9092")
	if err := built.Validate(); err != nil {
		t.Fatalf("demo config invalid: %v", err)
	}
	if !reflect.DeepEqual(file.Policy, built.Policy) {
		t.Errorf("policy differs:\nfile  %+v\nbuilt %+v", file.Policy, built.Policy)
	}
	if filepath.Clean(file.Storage.Path) != filepath.Clean(built.Storage.Path) ||
		filepath.Clean(file.Storage.EncryptionKeyFile) != filepath.Clean(built.Storage.EncryptionKeyFile) {
		t.Errorf("storage differs: file %+v, built %+v", file.Storage, built.Storage)
	}
	if filepath.Clean(file.AdminSocketPath()) != filepath.Clean(built.AdminSocketPath()) {
		t.Errorf("admin socket differs: %q vs %q", file.AdminSocketPath(), built.AdminSocketPath())
	}
	if !reflect.DeepEqual(file.WebAuthn, built.WebAuthn) {
		t.Errorf("webauthn differs: %+v vs %+v", file.WebAuthn, built.WebAuthn)
	}
}
