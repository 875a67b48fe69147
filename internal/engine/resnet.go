package engine

import (
	"context"
	"fmt"
	"math"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// convRows is the number of output pixels whose im2col rows one task
// builds at a time.
const convRows = 128

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
	stride, planes      int
	conv1, conv2, conv3 convLayer
	down                *convLayer // nil: identity shortcut
}

// attnPool is the AttentionPool2d head.
type attnPool struct {
	ch, heads, headDim, tokens int
	pos                        []float32 // tokens×ch
	q, k, v                    linear    // q pre-scaled by 1/√headDim
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
			b := bottleneck{stride: stride, planes: planes}
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
	ap.k = l.linear("visual.attnpool.k_proj", in, in, 0, 0)
	ap.v = l.linear("visual.attnpool.v_proj", in, in, 0, 0)
	ap.c = l.linear("visual.attnpool.c_proj", v.Embed, in, 0, 0)
	if l.err != nil {
		return nil, l.err
	}
	return r, nil
}

// forward applies the convolution to the channels-last h×w map src, writing
// the output map to dst with the epilogue ep, and returns its size.
func (c *convLayer) forward(threads int, dst, src []float32, h, w int, ep epilogue) (int, int) {
	oh := (h+2*c.pad-c.k)/c.stride + 1
	ow := (w+2*c.pad-c.k)/c.stride + 1
	if c.k == 1 && c.stride == 1 {
		sgemm(threads, h*w, src, c.cin, c.w, dst, c.cout, ep)
		return oh, ow
	}
	n := oh * ow
	kk := c.k * c.k * c.cin
	if blocks := (n + convRows - 1) / convRows; threads == 1 || blocks >= 2*threads {
		parallelFor(threads, blocks, func(i int) {
			p0, p1 := i*convRows, min((i+1)*convRows, n)
			col := getScratch((p1 - p0) * kk)
			c.im2col(col.f, src, h, w, ow, p0, p1)
			sgemm(1, p1-p0, col.f, kk, c.w, dst[p0*c.cout:], c.cout, ep)
			putScratch(col)
		})
		return oh, ow
	}
	col := getScratch(n * kk)
	c.im2col(col.f, src, h, w, ow, 0, n)
	sgemm(threads, n, col.f, kk, c.w, dst, c.cout, ep)
	putScratch(col)
	return oh, ow
}

// im2col writes the receptive fields of output pixels [p0, p1) as rows of
// k·k·cin values (zero outside the input).
func (c *convLayer) im2col(dst, src []float32, h, w, ow, p0, p1 int) {
	k, cin := c.k, c.cin
	kk := k * k * cin
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

// encode writes the features of n images (NCHW pixels) to out [n×embed].
func (r *resnetTower) encode(ctx context.Context, threads int, pixels []float32, n int, out []float32) error {
	img := 3 * r.size * r.size
	for i := range n {
		if err := r.encodeOne(ctx, threads, pixels[i*img:(i+1)*img], out[i*r.embed:(i+1)*r.embed]); err != nil {
			return fmt.Errorf("engine: encode images: %w", err)
		}
	}
	return nil
}

// fmap is a channels-last feature map held in a scratch buffer.
type fmap struct {
	buf     *scratch
	h, w, c int
}

func (r *resnetTower) encodeOne(ctx context.Context, threads int, img []float32, out []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := r.size
	x := fmap{buf: getScratch(s * s * 3), h: s, w: s, c: 3}
	for ch := range 3 {
		plane := img[ch*s*s : (ch+1)*s*s]
		for i, v := range plane {
			x.buf.f[i*3+ch] = v
		}
	}
	relu := func(c *convLayer) epilogue { return epilogue{bias: c.bias, act: actReLU} }
	for i := range r.stem {
		c := &r.stem[i]
		oh := (x.h+2*c.pad-c.k)/c.stride + 1
		ow := (x.w+2*c.pad-c.k)/c.stride + 1
		y := fmap{buf: getScratch(oh * ow * c.cout), h: oh, w: ow, c: c.cout}
		c.forward(threads, y.buf.f, x.buf.f, x.h, x.w, relu(c))
		putScratch(x.buf)
		x = y
	}
	x = poolMap(x, 2)
	for i := range r.blocks {
		if err := ctx.Err(); err != nil {
			putScratch(x.buf)
			return err
		}
		x = r.blocks[i].forward(threads, x)
	}
	r.pool.forward(threads, x.buf.f[:x.h*x.w*x.c], out)
	putScratch(x.buf)
	return nil
}

// poolMap average-pools x with a k×k window and stride k, releasing x.
func poolMap(x fmap, k int) fmap {
	if k == 1 {
		return x
	}
	y := fmap{buf: getScratch((x.h / k) * (x.w / k) * x.c), h: x.h / k, w: x.w / k, c: x.c}
	avgPoolHWC(y.buf.f, x.buf.f, x.h, x.w, x.c, k)
	putScratch(x.buf)
	return y
}

// forward runs the block on x, releasing it, and returns the output map.
func (b *bottleneck) forward(threads int, x fmap) fmap {
	h, w := x.h, x.w
	o1 := fmap{buf: getScratch(h * w * b.planes), h: h, w: w, c: b.planes}
	b.conv1.forward(threads, o1.buf.f, x.buf.f, h, w, epilogue{bias: b.conv1.bias, act: actReLU})
	o2 := fmap{buf: getScratch(h * w * b.planes), h: h, w: w, c: b.planes}
	b.conv2.forward(threads, o2.buf.f, o1.buf.f, h, w, epilogue{bias: b.conv2.bias, act: actReLU})
	putScratch(o1.buf)
	o2 = poolMap(o2, b.stride)

	oh, ow := o2.h, o2.w
	y := fmap{buf: getScratch(oh * ow * 4 * b.planes), h: oh, w: ow, c: 4 * b.planes}
	if b.down != nil {
		xs := x
		if b.stride > 1 {
			xs = fmap{buf: getScratch(oh * ow * x.c), h: oh, w: ow, c: x.c}
			avgPoolHWC(xs.buf.f, x.buf.f, h, w, x.c, b.stride)
		}
		b.down.forward(threads, y.buf.f, xs.buf.f, oh, ow, epilogue{bias: b.down.bias})
		if xs.buf != x.buf {
			putScratch(xs.buf)
		}
	} else {
		copy(y.buf.f, x.buf.f[:oh*ow*x.c])
	}
	putScratch(x.buf)
	b.conv3.forward(threads, y.buf.f, o2.buf.f, oh, ow, epilogue{acc: true, bias: b.conv3.bias, act: actReLU})
	putScratch(o2.buf)
	return y
}

// forward pools the final h·w×ch map x (raster order) into out [embed]: the
// mean token attends to itself and the spatial tokens, and only its output
// is computed.
func (a *attnPool) forward(threads int, x []float32, out []float32) {
	c, n := a.ch, a.tokens
	t := getScratch(n * c)
	tok := t.f
	hw := n - 1
	for j := range c {
		var sum float32
		for i := range hw {
			sum += x[i*c+j]
		}
		tok[j] = sum / float32(hw)
	}
	copy(tok[c:], x[:hw*c])
	for i, v := range a.pos[:n*c] {
		tok[i] += v
	}
	q := getScratch(c)
	sgemm(threads, 1, tok, c, a.q.w, q.f, c, epilogue{bias: a.q.bias})
	kv := getScratch(2 * n * c)
	k, v := kv.f[:n*c], kv.f[n*c:]
	sgemm(threads, n, tok, c, a.k.w, k, c, epilogue{bias: a.k.bias})
	sgemm(threads, n, tok, c, a.v.w, v, c, epilogue{bias: a.v.bias})
	putScratch(t)

	o := getScratch(c)
	clear(o.f)
	sc := getScratch(n)
	d := a.headDim
	for h := range a.heads {
		qh := q.f[h*d : (h+1)*d]
		for j := range n {
			kh := k[j*c+h*d : j*c+(h+1)*d]
			var s float32
			for i, qv := range qh {
				s += qv * kh[i]
			}
			sc.f[j] = s
		}
		softmax(sc.f)
		oh := o.f[h*d : (h+1)*d]
		for j, p := range sc.f {
			vh := v[j*c+h*d : j*c+(h+1)*d]
			for i, vv := range vh {
				oh[i] += p * vv
			}
		}
	}
	putScratch(sc)
	putScratch(kv)
	putScratch(q)
	sgemm(threads, 1, o.f, c, a.c.w, out, len(out), epilogue{bias: a.c.bias})
	putScratch(o)
}
