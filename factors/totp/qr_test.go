package totp

import (
	"bytes"
	"image"
	"image/png"
	"testing"
)

// The QR code keeps a quiet zone of at least 4 modules on every side, and
// whole-pixel modules: the finder pattern in the top-left corner (7
// modules of dark) tells the module size.
func TestQRQuietZone(t *testing.T) {
	for _, uri := range []string{
		"otpauth://totp/keygate:a?secret=JBSWY3DPEHPK3PXP&issuer=keygate",
		"otpauth://totp/keygate:alice.longname%40example.com?algorithm=SHA1&digits=6&issuer=keygate&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
	} {
		raw, err := qrPNG(uri, 256)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		checkQuietZone(t, img)
	}
}

func checkQuietZone(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	dark := func(x, y int) bool { r, _, _, _ := img.At(x, y).RGBA(); return r < 0x8000 }
	minX, minY, maxX, maxY := b.Max.X, b.Max.Y, -1, -1
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if dark(x, y) {
				minX, minY, maxX, maxY = min(minX, x), min(minY, y), max(maxX, x), max(maxY, y)
			}
		}
	}
	if maxX < 0 {
		t.Fatal("no dark pixel")
	}
	run := 0
	for x := minX; x < b.Max.X && dark(x, minY); x++ {
		run++
	}
	if run%7 != 0 {
		t.Fatalf("finder pattern %d px wide: not 7 whole modules", run)
	}
	module := run / 7
	for side, px := range map[string]int{"left": minX - b.Min.X, "top": minY - b.Min.Y,
		"right": b.Max.X - 1 - maxX, "bottom": b.Max.Y - 1 - maxY} {
		if px < 4*module {
			t.Errorf("%s quiet zone %d px = %.1f modules, want ≥ 4", side, px, float64(px)/float64(module))
		}
	}
	if w := b.Dx(); w < 200 || w > 300 {
		t.Errorf("image %d px wide, want about 256", w)
	}
}

// The enrolment's QR code is that image.
func TestEnrolmentQRHasQuietZone(t *testing.T) {
	en, err := newFixture(t, Options{}).f.BeginEnroll(t.Context(), "alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(en.QRPNG))
	if err != nil {
		t.Fatal(err)
	}
	checkQuietZone(t, img)
}
