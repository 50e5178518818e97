package totp

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/boombuler/barcode/qr"
)

// quietZone is the white border around a QR code, in modules. ISO/IEC
// 18004 asks for 4: with less, phone cameras on a dark page or a busy
// background miss the finder patterns (the library's own image has 1).
const quietZone = 4

// qrPNG draws uri as a QR code (error correction M) on a size×size image:
// each module a whole number of pixels (no blurred edges), centred, with
// at least a 4-module quiet zone (what is left of size widens it).
func qrPNG(uri string, size int) ([]byte, error) {
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		return nil, err
	}
	n := code.Bounds().Dx()
	scale := size / (n + 2*quietZone)
	if scale < 1 {
		return nil, fmt.Errorf("%d modules do not fit %d px with their quiet zone", n, size)
	}
	offset := (size - n*scale) / 2
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	// NewPaletted is all index 0: white. Only dark modules are drawn.
	for y := range n {
		for x := range n {
			if r, _, _, _ := code.At(x, y).RGBA(); r != 0 {
				continue
			}
			ox, oy := offset+x*scale, offset+y*scale
			for dy := range scale {
				row := img.Pix[(oy+dy)*img.Stride+ox:]
				for dx := range scale {
					row[dx] = 1
				}
			}
		}
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return out.Bytes(), nil
}
