package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
)

// Load reads the YAML file at path and returns the configuration it
// describes; see Parse. A file that cannot be read is a plain wrapped error,
// a file with mistakes is Problems.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, getenv)
}

// Parse builds the configuration from Default(), the YAML in data and the
// KEYGATE_* variables getenv returns (nil getenv = no environment; pass
// os.Getenv in the binary), then validates it. When anything is wrong it
// returns nil and Problems listing every problem in file order, each with
// its path and, where the value came from the file, its line.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cfg := Default()
	d := newDecoder()
	if !d.document(data, &cfg) {
		return nil, d.problems // a syntax error: nothing else can be trusted
	}
	fromEnv := map[string]string{}
	applyEnv(reflect.ValueOf(&cfg).Elem(), "", getenv, fromEnv, &d.problems)
	if cfg.Server.AdminSocket == "" {
		cfg.Server.AdminSocket = defaultAdminSocket(cfg.Storage.Path)
	}

	ps := d.problems
	if err := cfg.Validate(); err != nil {
		vps, ok := errors.AsType[Problems](err)
		if !ok {
			return nil, fmt.Errorf("validate: %w", err)
		}
		for _, p := range vps {
			// A value that failed to decode kept its default, or an empty
			// list item; what Validate says about it would only repeat
			// the decode problem.
			if coveredBy(d.problems, p.Path) {
				continue
			}
			ps = append(ps, locate(p, d.lines, fromEnv))
		}
	}
	if len(ps) > 0 {
		ps.sortByLine()
		return nil, ps
	}
	return &cfg, nil
}

func coveredBy(ps Problems, path string) bool {
	for _, p := range ps {
		if p.Path != "" && covers(p.Path, path) {
			return true
		}
	}
	return false
}

// locate points a Validate problem at where its value came from: the
// environment variable that set it, or else the line of the nearest key
// written in the file (a missing webauthn.rp_name points at "webauthn:").
func locate(p Problem, lines map[string]int, fromEnv map[string]string) Problem {
	for path := p.Path; path != ""; path = parentPath(path) {
		if env, ok := fromEnv[path]; ok {
			p.Message += " (set by " + env + ")"
			return p
		}
	}
	for path := p.Path; path != ""; path = parentPath(path) {
		if l, ok := lines[path]; ok {
			p.Line = l
			return p
		}
	}
	return p
}
