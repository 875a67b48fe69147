// Copyright 2026 The tinyclip-go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package jpeg

// ColorSpace is the colour space of a JPEG image's components, as libjpeg
// infers it from the JFIF and Adobe markers and the component identifiers.
type ColorSpace int

// The colour spaces libjpeg distinguishes.
const (
	Gray  ColorSpace = iota + 1 // one component
	YCbCr                       // three components, JFIF YCbCr
	RGB                         // three components stored as R, G, B
	CMYK                        // four components stored as C, M, Y, K
	YCCK                        // four components: YCbCr and K (Adobe transform 2)
)

// String returns the colour space's name.
func (c ColorSpace) String() string {
	switch c {
	case Gray:
		return "Gray"
	case YCbCr:
		return "YCbCr"
	case RGB:
		return "RGB"
	case CMYK:
		return "CMYK"
	case YCCK:
		return "YCCK"
	}
	return "unknown"
}

// Raw is a decoded JPEG image before upsampling and colour conversion.
type Raw struct {
	Width, Height  int        // image size in pixels
	MaxH, MaxV     int        // largest horizontal and vertical sampling factors
	ColorSpace     ColorSpace // libjpeg's interpretation of the components
	Progressive    bool       // coded with a progressive (SOF2) process
	JFIF           bool       // has a JFIF APP0 segment
	AdobeTransform int        // transform flag of the Adobe APP14 segment, -1 without one
	Components     []Component
}

// Component is one decoded component plane.
type Component struct {
	ID   uint8 // component identifier in the frame header
	H, V int   // sampling factors (1, 1 for a single-component image)
	// Width and Height are the plane's meaningful size:
	// ⌈image width·H/MaxH⌉ × ⌈image height·V/MaxV⌉ samples.
	Width, Height int
	// Pix holds the samples, row y at Pix[y*Stride:]. The plane is padded to
	// whole blocks; samples beyond Width and Height are not meaningful.
	Stride int
	Pix    []byte
}
