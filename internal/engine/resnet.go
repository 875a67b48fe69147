package engine

import (
	"context"
	"fmt"
	"math"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// convRows is the number of output pixels whose im2col rows one task
// builds at a time (a multiple of every kernel's mr).
const convRows = 144

// convLayer is a bias-free convolution with its BatchNorm folded in
// (spec §1.1.1), on channels-last maps. Its weight is packed as the B
// operand of a GEMM over im2col rows ordered (ky, kx, channel).
type convLayer struct {
	cin, cout, k, stride, pad int
	w                         *packedB
	bias                      []float32
}

// bottleneck is a ModifiedResNet Bottleneck block.
type bottleneck struct {
	stage, stride       int
	planes              int
	conv1, conv2, conv3 convLayer
	down                *convLayer // nil: identity shortcut
}

// attnPool is the AttentionPool2d head. Only the mean token's output is
// used, and it is computed without forming the other tokens' keys and
// values (see forward), so the key and value weights stay as loaded.
type attnPool struct {
	ch, heads, headDim, tokens int
	pos                        []float32 // tokens×ch
	q                          linear    // pre-scaled by 1/√headDim
	wk, wv                     []float32 // key and value weights [ch×ch], row = output unit
	bv                         []float32 // value bias
	c                          linear    // ch → embed
}

// resnetTower is the ModifiedResNet image tower (spec §1.1.4).
type resnetTower struct {
	size, embed int
	stem        [3]convLayer
	blocks      []bottleneck
	pool        attnPool
}

// resnetGrid returns the side of the final feature map for an image size.
func resnetGrid(size int) int {
	s := (size-1)/2 + 1 // conv1, stride 2, padding 1
	s /= 2              // stem average pool
	for range 3 {
		s /= 2 // stages 2–4
	}
	return s
}

// conv loads prefix.weight [cout, cin, k, k] and the BatchNorm bn, folds them
// and packs the weight.
func (l *loader) conv(prefix, bn string, cin, cout, k, stride int) convLayer {
	c := convLayer{cin: cin, cout: cout, k: k, stride: stride, pad: k / 2}
	w := l.get(prefix+".weight", cout, cin, k, k)
	g := l.get(bn+".weight", cout)
	b := l.get(bn+".bias", cout)
	mean := l.get(bn+".running_mean", cout)
	vr := l.get(bn+".running_var", cout)
	if l.err != nil {
		return c
	}
	kk := k * k * cin
	p := make([]float32, cout*kk)
	c.bias = make([]float32, cout)
	for o := range cout {
		s := float64(g[o]) / math.Sqrt(float64(vr[o])+lnEps)
		c.bias[o] = float32(float64(b[o]) - float64(mean[o])*s)
		for ci := range cin {
			for y := range k {
				for x := range k {
					v := float64(w[((o*cin+ci)*k+y)*k+x]) * s
					p[o*kk+(y*k+x)*cin+ci] = float32(v)
				}
			}
		}
	}
	c.w = l.packT(p, cout, kk)
	return c
}

func buildResNet(l *loader, v *config.VisionArch) (*resnetTower, error) {
	w := v.Width
	r := &resnetTower{size: v.ImageSize, embed: v.Embed}
	r.stem[0] = l.conv("visual.conv1", "visual.bn1", 3, w/2, 3, 2)
	r.stem[1] = l.conv("visual.conv2", "visual.bn2", w/2, w/2, 3, 1)
	r.stem[2] = l.conv("visual.conv3", "visual.bn3", w/2, w, 3, 1)
	in := w
	for s, n := range v.Layers {
		planes := w << s
		for i := range n {
			stride := 1
			if s > 0 && i == 0 {
				stride = 2
			}
			p := fmt.Sprintf("visual.layer%d.%d.", s+1, i)
			b := bottleneck{stage: s, stride: stride, planes: planes}
			b.conv1 = l.conv(p+"conv1", p+"bn1", in, planes, 1, 1)
			b.conv2 = l.conv(p+"conv2", p+"bn2", planes, planes, 3, 1)
			b.conv3 = l.conv(p+"conv3", p+"bn3", planes, 4*planes, 1, 1)
			if stride > 1 || in != 4*planes {
				d := l.conv(p+"downsample.0", p+"downsample.1", in, 4*planes, 1, 1)
				b.down = &d
			}
			r.blocks = append(r.blocks, b)
			in = 4 * planes
		}
	}
	g := resnetGrid(v.ImageSize)
	ap := &r.pool
	ap.ch, ap.heads, ap.headDim, ap.tokens = in, v.PoolHeads, v.PoolHeadDim, g*g+1
	ap.pos = l.get("visual.attnpool.positional_embedding", ap.tokens, in)
	ap.q = l.linear("visual.attnpool.q_proj", in, in, in, attnScale(v.PoolHeadDim))
	ap.wk = l.get("visual.attnpool.k_proj.weight", in, in)
	// The key bias adds qₕ·bₕ to every score of head h alike, which the
	// softmax cancels: checked for its shape, then not needed.
	l.get("visual.attnpool.k_proj.bias", in)
	ap.wv = l.get("visual.attnpool.v_proj.weight", in, in)
	ap.bv = l.get("visual.attnpool.v_proj.bias", in)
	ap.c = l.linear("visual.attnpool.c_proj", v.Embed, in, 0, 0)
	if l.err != nil {
		return nil, l.err
	}
	return r, nil
}

// mapDst is where a convolution writes its output map of width w: a plain
// channels-last map (pw = w, pad = 0), or the interior of a map with a zero
// border of pad pixels, rows of pw = w + 2·pad pixels — the input layout of
// an implicit-GEMM convolution (forwardPadded), which the producer then
// fills directly instead of through a copy of its own.
type mapDst struct {
	f       []float32
	pw, pad int
}

// plainDst is the plain map f of width w.
func plainDst(f []float32, w int) mapDst { return mapDst{f: f, pw: w} }

func (d mapDst) plain() bool { return d.pad == 0 }

// put copies channels [j0, j1) of output pixels [p0, p1) (raster order in a
// map of width w, c channels) from src, whose row i holds pixel p0+i at
// stride ld, into d.
func (d mapDst) put(w, c, j0, j1, p0, p1 int, src []float32, ld int) {
	for p := p0; p < p1; {
		y, x := p/w, p%w
		run := min(w-x, p1-p)
		o := ((y+d.pad)*d.pw + d.pad + x) * c
		s := (p - p0) * ld
		if j0 == 0 && j1 == c && ld == c {
			copy(d.f[o:o+run*c], src[s:s+run*c])
		} else {
			for q := range run {
				copy(d.f[o+q*c+j0:o+q*c+j1], src[s+q*ld+j0:s+q*ld+j1])
			}
		}
		p += run
	}
}

// outSize returns the output size for an h×w input.
func (c *convLayer) outSize(h, w int) (int, int) {
	return (h+2*c.pad-c.k)/c.stride + 1, (w+2*c.pad-c.k)/c.stride + 1
}

// implicit reports whether the convolution runs as an implicit GEMM
// (forwardPadded): k > 1, stride 1, an FP32 kernel with a conv variant.
func (c *convLayer) implicit() bool {
	return c.k > 1 && c.stride == 1 && c.w.kern.conv != nil && c.w.bf16 == nil
}

// forward applies the convolution to the channels-last h×w map src, writing
// the output map to dst with the epilogue ep, and returns its size.
func (c *convLayer) forward(threads int, dst, src []float32, h, w int, ep epilogue) (int, int) {
	oh, ow := c.outSize(h, w)
	c.forwardTo(threads, plainDst(dst, ow), src, h, w, ep)
	return oh, ow
}

// forwardTo is forward writing to dst.
func (c *convLayer) forwardTo(threads int, dst mapDst, src []float32, h, w int, ep epilogue) {
	oh, ow := c.outSize(h, w)
	if c.k == 1 && c.stride == 1 {
		c.gemm(threads, dst, ow, h*w, src, c.cin, ep)
		return
	}
	if c.implicit() && !ep.acc {
		in, pd := c.newPadded(h, w)
		cin := c.cin
		parallelRange(threads, h, max(1, (1<<16)/max(1, w*cin)), func(y0, y1 int) {
			pd.put(w, cin, 0, cin, y0*w, y1*w, src[y0*w*cin:], cin)
		})
		c.forwardPadded(threads, dst, in, h, w, ep, nil)
		return
	}
	n := oh * ow
	kk := c.k * c.k * c.cin
	if blocks := (n + convRows - 1) / convRows; threads == 1 || blocks >= 2*threads {
		parallelFor(threads, blocks, func(i int) {
			p0, p1 := i*convRows, min((i+1)*convRows, n)
			col := getScratch((p1 - p0) * kk)
			c.im2col(col.f, src, h, w, ow, p0, p1)
			c.gemmRange(1, dst, ow, p0, p1, col.f, kk, ep)
			putScratch(col)
		})
		return
	}
	col := getScratch(n * kk)
	c.im2col(col.f, src, h, w, ow, 0, n)
	c.gemm(threads, dst, ow, n, col.f, kk, ep)
	putScratch(col)
}

// gemm computes the m output pixels of a map of width w from their rows of
// a (stride lda) as one product with the weight, writing them to dst.
func (c *convLayer) gemm(threads int, dst mapDst, w, m int, a []float32, lda int, ep epilogue) {
	if dst.plain() {
		sgemm(threads, m, a, lda, c.w, dst.f, c.cout, ep)
		return
	}
	if c.w.bf16 != nil { // not a layout any BF16 consumer reads; kept general
		c.gemmRange(threads, dst, w, 0, m, a, lda, ep)
		return
	}
	nr := c.w.kern.nr
	forTiles(threads, m, c.w, func(i0, i1, p0, p1 int) {
		t := getScratch((i1 - i0) * c.cout)
		sgemmBlock(a[i0*lda:], lda, c.w, t.f, c.cout, 0, i1-i0, p0, p1, &ep)
		dst.put(w, c.cout, p0*nr, min(p1*nr, c.cout), i0, i1, t.f, c.cout)
		putScratch(t)
	})
}

// newPadded returns a buffer for the input of the (implicit) convolution
// of an h×w map, its border zeroed, and the mapDst through which a producer
// writes the interior.
func (c *convLayer) newPadded(h, w int) (*scratch, mapDst) {
	mr := c.w.kern.mr
	pad, cin := c.pad, c.cin
	pw, ph := w+2*pad, h+2*pad
	strips := (h*pw + mr - 1) / mr
	maxOff := (c.k-1)*pw + c.k - 1
	in := getScratch(max(ph*pw, strips*mr+maxOff) * cin)
	f := in.f
	clear(f[:(pad*pw+pad)*cin])
	for y := range h { // right border of row y, left border of row y+1
		clear(f[((y+pad)*pw+pad+w)*cin : ((y+pad+1)*pw+pad)*cin])
	}
	clear(f[((h+pad)*pw+pad)*cin:])
	return in, mapDst{f: f, pw: pw, pad: pad}
}

// forwardPadded computes a stride-1 convolution as an implicit GEMM, without
// im2col, from its input in (from newPadded, filled; released here). In
// the zero-bordered input of width pw = w + 2·pad, output pixel (y, x) is
// computed at "virtual" row v = y·pw + x, whose tap (ky, kx) is input row
// v + ky·pw + kx. So for any run of consecutive virtual rows each tap's A
// operand is a run of consecutive input rows (row stride cin), and the
// kernel's conv variant walks the k·k taps as k·k segments of the K
// dimension (the weight is packed with K ordered (ky, kx, channel)).
// Virtual rows with x ≥ w (2·pad per image row) are computed and dropped.
// A task that computes whole rows also writes its pixels to dst and then,
// with then non-nil, calls then(p0, p1) for the output pixels [p0, p1)
// (raster order) it wrote; forwardPadded reports whether tasks did (else
// the caller runs what then would have).
func (c *convLayer) forwardPadded(threads int, dst mapDst, in *scratch, h, w int, ep epilogue, then func(p0, p1 int)) bool {
	kern := c.w.kern
	mr, nr := kern.mr, kern.nr
	k, pad, cin, cout := c.k, c.pad, c.cin, c.cout
	pw := w + 2*pad
	strips := (h*pw + mr - 1) / mr
	rows := strips * mr
	var offs [49]int
	taps := offs[:k*k]
	for ky := range k {
		for kx := range k {
			taps[ky*k+kx] = (ky*pw + kx) * cin * 4
		}
	}
	out := getScratch(rows * cout)
	panels, _ := panelsOf(kern, cout)
	// Blocks of up to rowBlock rows; when there are several, at least four
	// per thread (as in sgemm).
	sb := max(1, rowBlock/mr)
	mb := (strips + sb - 1) / sb
	if mb > 1 && threads > 1 {
		mb = min(max(mb, 4*threads), strips)
		sb = (strips + mb - 1) / mb
		mb = (strips + sb - 1) / sb
	}
	nt := 1
	if threads > 1 && mb < 2*threads {
		nt = min(panels, (2*threads+mb-1)/mb)
	}
	pt := (panels + nt - 1) / nt
	nt = (panels + pt - 1) / pt
	parallelFor(threads, mb*nt, func(t int) {
		s0 := (t / nt) * sb
		ns := min(sb, strips-s0)
		for p := (t % nt) * pt; p < min((t%nt+1)*pt, panels); p++ {
			off, width := c.w.panel(p)
			col := p * nr
			wc := min(width, cout-col)
			var bias []float32
			flags := 0
			if ep.bias != nil {
				bias, flags = ep.bias[col:col+wc], gemmBias
			}
			if ep.act == actReLU && kern.relu {
				flags |= gemmReLU
			}
			kern.conv(cin, in.f[s0*mr*cin:], cin, taps, c.w.data[off:off+width*c.w.k], width,
				out.f[s0*mr*cout+col:], cout, ns, bias, flags, wc)
		}
		if nt == 1 {
			v0, v1 := s0*mr, min((s0+ns)*mr, h*pw)
			c.finish(dst, out.f, v0, v1, w, ep)
			if then != nil {
				// The valid pixels of virtual rows [v0, v1) are one run.
				pix := func(v int) int { return v/pw*w + min(v%pw, w) }
				if p0, p1 := pix(v0), pix(v1); p1 > p0 {
					then(p0, p1)
				}
			}
		}
	})
	putScratch(in)
	if nt > 1 {
		parallelRange(threads, h, max(1, (1<<16)/max(1, w*cout)), func(y0, y1 int) {
			c.finish(dst, out.f, y0*pw, y1*pw, w, ep)
		})
	}
	putScratch(out)
	return nt == 1
}

// finish applies the activation (where the kernel did not) to the pixels
// of virtual rows [v0, v1) of out and writes them to dst.
func (c *convLayer) finish(dst mapDst, out []float32, v0, v1, w int, ep epilogue) {
	kern, cout := c.w.kern, c.cout
	pw := w + 2*c.pad
	act := ep.act != actNone && !(ep.act == actReLU && kern.relu)
	for v := v0; v < v1; {
		y, x := v/pw, v%pw
		if x >= w {
			v = (y + 1) * pw
			continue
		}
		run := min(w-x, v1-v)
		rows := out[v*cout : (v+run)*cout]
		if act {
			kern.activate(ep.act, rows)
		}
		dst.put(w, cout, 0, cout, y*w+x, y*w+x+run, rows, cout)
		v += run
	}
}

// im2col writes the receptive fields of output pixels [p0, p1) as rows of
// k·k·cin values (zero outside the input).
func (c *convLayer) im2col(dst, src []float32, h, w, ow, p0, p1 int) {
	k, cin := c.k, c.cin
	kk := k * k * cin
	if cin < 8 {
		c.im2colNarrow(dst, src, h, w, ow, p0, p1)
		return
	}
	for p := p0; p < p1; p++ {
		oy, ox := p/ow, p%ow
		row := dst[(p-p0)*kk : (p-p0+1)*kk]
		for ky := range k {
			iy := oy*c.stride - c.pad + ky
			for kx := range k {
				ix := ox*c.stride - c.pad + kx
				d := row[(ky*k+kx)*cin : (ky*k+kx+1)*cin]
				if iy < 0 || iy >= h || ix < 0 || ix >= w {
					clear(d)
					continue
				}
				copy(d, src[(iy*w+ix)*cin:(iy*w+ix+1)*cin])
			}
		}
	}
}

// im2colNarrow is im2col for few input channels (the stem's RGB input),
// copying values one by one rather than in runs of cin.
func (c *convLayer) im2colNarrow(dst, src []float32, h, w, ow, p0, p1 int) {
	k, cin := c.k, c.cin
	kk := k * k * cin
	for p := p0; p < p1; p++ {
		oy, ox := p/ow, p%ow
		row := dst[(p-p0)*kk : (p-p0+1)*kk]
		i := 0
		for ky := range k {
			iy := oy*c.stride - c.pad + ky
			for kx := range k {
				ix := ox*c.stride - c.pad + kx
				if iy < 0 || iy >= h || ix < 0 || ix >= w {
					for range cin {
						row[i] = 0
						i++
					}
					continue
				}
				in := src[(iy*w+ix)*cin : (iy*w+ix+1)*cin]
				for _, v := range in {
					row[i] = v
					i++
				}
			}
		}
	}
}

// resnetBatch is the number of images whose stage-3 and stage-4 maps are
// stacked, so that their 1×1 convolutions and the attention pool run as
// one GEMM (at 14² and 7² pixels an image alone gives few rows, and the
// large weights of the late stages would be streamed once per image).
const resnetBatch = 8

// encode writes the features of n images (NCHW pixels) to out [n×embed].
// Each image runs alone through the stem and the stages whose maps are
// large; the rest runs on groups of up to resnetBatch images.
func (r *resnetTower) encode(ctx context.Context, threads int, pixels []float32, n int, out []float32) error {
	img := 3 * r.size * r.size
	late := r.lateBlock()
	for i0 := 0; i0 < n; i0 += resnetBatch {
		nb := min(resnetBatch, n-i0)
		var stack fmap
		for i := range nb {
			if err := ctx.Err(); err != nil {
				putScratch(stack.buf)
				return fmt.Errorf("engine: encode images: %w", err)
			}
			x := r.early(threads, pixels[(i0+i)*img:(i0+i+1)*img], late)
			if nb == 1 {
				stack = x
				break
			}
			if i == 0 {
				stack = fmap{buf: getScratch(nb * x.size()), n: nb, h: x.h, w: x.w, c: x.c}
			}
			copy(stack.buf.f[i*x.size():(i+1)*x.size()], x.buf.f[:x.size()])
			putScratch(x.buf)
		}
		x := stack
		var in *scratch // the next block's conv2 input, when this one ran its conv1
		for i := late; i < len(r.blocks); i++ {
			if err := ctx.Err(); err != nil {
				putScratch(x.buf)
				putScratch(in)
				return fmt.Errorf("engine: encode images: %w", err)
			}
			var next *bottleneck
			if i+1 < len(r.blocks) {
				next = &r.blocks[i+1]
			}
			x, in = r.blocks[i].forward(threads, x, in, next)
		}
		r.pool.forward(threads, x, out[i0*r.embed:(i0+nb)*r.embed])
		putScratch(x.buf)
	}
	return nil
}

// lateBlock returns the index of the first block of the third stage, from
// which images are stacked.
func (r *resnetTower) lateBlock() int {
	i := 0
	for i < len(r.blocks) && r.blocks[i].stage < 2 {
		i++
	}
	return i
}

// fmap is a channels-last feature map of n images held in a scratch buffer
// (image after image, each h×w×c).
type fmap struct {
	buf        *scratch
	n, h, w, c int
}

// size returns the values of one image's map.
func (x fmap) size() int { return x.h * x.w * x.c }

// early runs one image through the stem and blocks [0, late).
func (r *resnetTower) early(threads int, img []float32, late int) fmap {
	s := r.size
	x := fmap{buf: getScratch(s * s * 3), n: 1, h: s, w: s, c: 3}
	for ch := range 3 {
		plane := img[ch*s*s : (ch+1)*s*s]
		for i, v := range plane {
			x.buf.f[i*3+ch] = v
		}
	}
	// A convolution followed by an implicit one writes straight into that
	// one's bordered input (in), which then replaces x.
	var in *scratch
	for i := range r.stem {
		c := &r.stem[i]
		oh, ow := c.outSize(x.h, x.w)
		var dst mapDst
		var y fmap
		var next *scratch
		if i+1 < len(r.stem) && r.stem[i+1].implicit() {
			next, dst = r.stem[i+1].newPadded(oh, ow)
		} else {
			y = fmap{buf: getScratch(oh * ow * c.cout), n: 1, h: oh, w: ow, c: c.cout}
			dst = plainDst(y.buf.f, ow)
		}
		if in != nil {
			c.forwardPadded(threads, dst, in, x.h, x.w, reluEp(c), nil)
		} else {
			c.forwardTo(threads, dst, x.buf.f, x.h, x.w, reluEp(c))
			putScratch(x.buf)
		}
		in = next
		x = fmap{buf: y.buf, n: 1, h: oh, w: ow, c: c.cout}
	}
	x = poolMap(threads, x, 2)
	// in is nil here (the stem ends in a plain map); from now on it is the
	// next block's conv2 input when a block ran that block's conv1.
	for i := range late {
		var next *bottleneck
		if i+1 < late {
			next = &r.blocks[i+1]
		}
		x, in = r.blocks[i].forward(threads, x, in, next)
	}
	return x
}

// reluEp is the epilogue of a convolution followed by ReLU.
func reluEp(c *convLayer) epilogue { return epilogue{bias: c.bias, act: actReLU} }

// poolMap average-pools x with a k×k window and stride k, releasing x.
func poolMap(threads int, x fmap, k int) fmap {
	if k == 1 {
		return x
	}
	y := fmap{buf: getScratch(x.n * (x.h / k) * (x.w / k) * x.c), n: x.n, h: x.h / k, w: x.w / k, c: x.c}
	poolInto(threads, y, x, k)
	putScratch(x.buf)
	return y
}

// poolInto average-pools every image of x into y (k×k windows, stride k),
// splitting output rows over the threads.
func poolInto(threads int, y, x fmap, k int) {
	rowIn, rowOut := k*x.w*x.c, y.w*y.c
	parallelRange(threads, x.n*y.h, max(1, (1<<16)/max(1, rowIn)), func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			i, oy := r/y.h, r%y.h
			src := x.buf.f[i*x.size()+oy*rowIn : i*x.size()+(oy+1)*rowIn]
			avgPoolHWC(y.buf.f[i*y.size()+oy*rowOut:i*y.size()+(oy+1)*rowOut], src, k, x.w, x.c, k)
		}
	})
}

// conv applies c to every image of x (a 1×1 stride-1 convolution as one
// GEMM over all pixels), writing to y, which has the output shape.
func (c *convLayer) conv(threads int, y, x fmap, ep epilogue) {
	if c.k == 1 && c.stride == 1 {
		sgemm(threads, x.n*x.h*x.w, x.buf.f, c.cin, c.w, y.buf.f, c.cout, ep)
		return
	}
	for i := range x.n {
		c.forward(threads, y.buf.f[i*y.size():(i+1)*y.size()], x.buf.f[i*x.size():(i+1)*x.size()], x.h, x.w, ep)
	}
}

// forward runs the block on x, releasing it, and returns the output map.
// For one image it can run the next block's conv1 too (next non-nil):
// then it returns that conv1's output as the bordered input of next's
// conv2 (nin), for next.forward's in. With in non-nil, this block's conv1
// was run that way and in is its conv2's input.
func (b *bottleneck) forward(threads int, x fmap, in *scratch, next *bottleneck) (y fmap, nin *scratch) {
	h, w, n := x.h, x.w, x.n
	o2 := fmap{buf: getScratch(n * h * w * b.planes), n: n, h: h, w: w, c: b.planes}
	if n == 1 && b.conv2.implicit() {
		if in == nil { // conv1 writes straight into conv2's bordered input
			var dst mapDst
			in, dst = b.conv2.newPadded(h, w)
			b.conv1.forwardTo(threads, dst, x.buf.f, h, w, reluEp(&b.conv1))
		}
		if b.stride == 1 && chainBlocks {
			return b.chain(threads, x, o2, in, next)
		}
		b.conv2.forwardPadded(threads, plainDst(o2.buf.f, w), in, h, w, reluEp(&b.conv2), nil)
	} else {
		o1 := fmap{buf: getScratch(n * h * w * b.planes), n: n, h: h, w: w, c: b.planes}
		b.conv1.conv(threads, o1, x, reluEp(&b.conv1))
		b.conv2.conv(threads, o2, o1, reluEp(&b.conv2))
		putScratch(o1.buf)
	}
	o2 = poolMap(threads, o2, b.stride)
	y = b.shortcut(threads, x, o2.h, o2.w)
	b.conv3.conv(threads, y, o2, epilogue{acc: true, bias: b.conv3.bias, act: actReLU})
	putScratch(o2.buf)
	return y, nil
}

// shortcut returns the map conv3 accumulates onto: x itself, or the
// downsample of x (average-pooled to oh×ow first), releasing x.
func (b *bottleneck) shortcut(threads int, x fmap, oh, ow int) fmap {
	if b.down == nil {
		return x
	}
	n := x.n
	y := fmap{buf: getScratch(n * oh * ow * 4 * b.planes), n: n, h: oh, w: ow, c: 4 * b.planes}
	xs := x
	if b.stride > 1 {
		xs = fmap{buf: getScratch(n * oh * ow * x.c), n: n, h: oh, w: ow, c: x.c}
		poolInto(threads, xs, x, b.stride)
	}
	b.down.conv(threads, y, xs, epilogue{bias: b.down.bias})
	if xs.buf != x.buf {
		putScratch(xs.buf)
	}
	putScratch(x.buf)
	return y
}

// chainBlocks enables chain (tests turn it off to compare).
var chainBlocks = true

// chain runs conv2 (from its bordered input in), conv3 and, when next is
// an implicit-conv2 block of the same size, next's conv1 for one image of
// a stride-1 block as one parallel loop: each task of conv2 that computes
// whole output rows goes on with conv3 on its pixels (all of conv3's
// inputs for a pixel are that pixel's conv2 output and shortcut) and with
// next's conv1 on the pixels conv3 just wrote. Where conv2 splits channels
// instead, conv3 and next's conv1 run as loops of their own.
func (b *bottleneck) chain(threads int, x, o2 fmap, in *scratch, next *bottleneck) (fmap, *scratch) {
	h, w := x.h, x.w
	y := b.shortcut(threads, x, h, w)
	cout := 4 * b.planes
	var nin *scratch
	var ndst mapDst
	if next != nil && next.conv2.implicit() && next.conv1.cin == cout {
		nin, ndst = next.conv2.newPadded(h, w)
	}
	ep3 := epilogue{acc: true, bias: b.conv3.bias, act: actReLU}
	fused := b.conv2.forwardPadded(threads, plainDst(o2.buf.f, w), in, h, w, reluEp(&b.conv2), func(p0, p1 int) {
		sgemm(1, p1-p0, o2.buf.f[p0*b.planes:], b.planes, b.conv3.w, y.buf.f[p0*cout:], cout, ep3)
		if nin != nil {
			next.conv1.gemmRange(1, ndst, w, p0, p1, y.buf.f[p0*cout:], cout, reluEp(&next.conv1))
		}
	})
	if !fused {
		b.conv3.conv(threads, y, o2, ep3)
		if nin != nil {
			next.conv1.forwardTo(threads, ndst, y.buf.f, h, w, reluEp(&next.conv1))
		}
	}
	putScratch(o2.buf)
	return y, nin
}

// gemmRange computes the output pixels [p0, p1) of a map of width w as one
// product of their rows of a (stride lda: the input pixels of a 1×1
// convolution, im2col rows otherwise) with the weight, writing them to dst.
func (c *convLayer) gemmRange(threads int, dst mapDst, w, p0, p1 int, a []float32, lda int, ep epilogue) {
	if dst.plain() {
		sgemm(threads, p1-p0, a, lda, c.w, dst.f[p0*c.cout:], c.cout, ep)
		return
	}
	t := getScratch((p1 - p0) * c.cout)
	sgemm(threads, p1-p0, a, lda, c.w, t.f, c.cout, ep)
	dst.put(w, c.cout, 0, c.cout, p0, p1, t.f, c.cout)
	putScratch(t)
}

// forward pools each image's final h·w×ch map (raster order) into out
// [n×embed]: the mean token x₀ attends to itself and the spatial tokens,
// and only its output is computed. The keys and values of the 50 tokens
// (two ch×ch products per token) are never formed: with qₕ the mean
// token's query in head h and Wₖₕ, Wᵥₕ the head's rows of the key and value
// weights, its score against token x_t is qₕ·(Wₖₕx_t + bₖₕ) = uₕ·x_t + const
// with uₕ = Wₖₕᵀqₕ (the constant cancels in the softmax), and its output is
// Σ_t a_t(Wᵥₕx_t + bᵥₕ) = Wᵥₕ(Σ_t a_t x_t) + bᵥₕ since the weights a_t sum
// to 1. That is about 4·ch² multiply-adds per image instead of 2·tokens·ch²
// (ResNet-19M: 8 M instead of 198 M), each head's weights read once per
// group of images. The query and output projections run over all images at
// once.
func (a *attnPool) forward(threads int, x fmap, out []float32) {
	c, t, n := a.ch, a.tokens, x.n
	hw := t - 1
	tk := getScratch(n * t * c)
	for i := range n {
		tok := tk.f[i*t*c : (i+1)*t*c]
		xi := x.buf.f[i*hw*c : (i+1)*hw*c]
		mean := tok[:c]
		clear(mean)
		for p := range hw {
			addTo(mean, xi[p*c:(p+1)*c])
		}
		for j := range mean {
			mean[j] /= float32(hw)
		}
		copy(tok[c:], xi)
		addTo(tok, a.pos[:t*c])
	}
	q := getScratch(n * c)
	sgemm(threads, n, tk.f, t*c, a.q.w, q.f, c, epilogue{bias: a.q.bias})

	o := getScratch(n * c)
	d := a.headDim
	kern := a.q.w.kern
	parallelFor(threads, a.heads, func(h int) {
		sc := getScratch(2*c + t)
		u, mix, s := sc.f[:c], sc.f[c:2*c], sc.f[2*c:2*c+t]
		for i := range n {
			tok := tk.f[i*t*c : (i+1)*t*c]
			qh := q.f[i*c+h*d : i*c+(h+1)*d]
			clear(u)
			for e, qe := range qh {
				axpy(u, qe, a.wk[(h*d+e)*c:(h*d+e+1)*c])
			}
			for j := range t {
				s[j] = dot(u, tok[j*c:(j+1)*c])
			}
			kern.softmax(s)
			clear(mix)
			for j, p := range s {
				axpy(mix, p, tok[j*c:(j+1)*c])
			}
			oh := o.f[i*c+h*d : i*c+(h+1)*d]
			for e := range oh {
				oh[e] = dot(a.wv[(h*d+e)*c:(h*d+e+1)*c], mix) + a.bv[h*d+e]
			}
		}
		putScratch(sc)
	})
	putScratch(tk)
	putScratch(q)
	sgemm(threads, n, o.f, c, a.c.w, out, len(out)/n, epilogue{bias: a.c.bias})
	putScratch(o)
}
