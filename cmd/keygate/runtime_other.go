//go:build !linux

package main

// releaseTableMaps is a no-op off Linux (see runtime_linux.go).
func releaseTableMaps(string) (int64, error) { return 0, nil }
