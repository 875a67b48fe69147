package config

import "strings"

// Params are the parameter counts of a model as spec §1.2 tabulates them.
// BatchNorm running statistics and counters are buffers, not parameters.
type Params struct {
	Image          int64 // everything under visual.
	TextNoTokenEmb int64 // the text tower without the token embedding
	TokenEmb       int64 // token_embedding.weight
	Total          int64 // Image + TextNoTokenEmb + TokenEmb + 1 (logit_scale)
}

// MACs are the multiply-accumulate counts of one forward pass per tower, by
// the convention of spec §10 (macs.py): the image at its configured size, the
// text at its full context length, every convolution and linear layer, the two
// attention matmuls of every attention layer (the ResNet attention pool over
// all its tokens), and each tower's final projection.
type MACs struct {
	Image, Text int64
}

// Total returns Image + Text.
func (m MACs) Total() int64 { return m.Image + m.Text }

// Params returns the parameter counts of a.
func (a *Arch) Params() Params {
	var p Params
	for _, s := range a.tensorSpecs() {
		if s.tol == mayBePresent || strings.HasSuffix(s.name, ".running_mean") ||
			strings.HasSuffix(s.name, ".running_var") || strings.HasSuffix(s.name, ".num_batches_tracked") {
			continue
		}
		n := int64(1)
		for _, d := range s.shape {
			n *= int64(d)
		}
		switch {
		case strings.HasPrefix(s.name, "visual."):
			p.Image += n
		case s.name == "token_embedding.weight":
			p.TokenEmb += n
		case s.name == "logit_scale":
		default:
			p.TextNoTokenEmb += n
		}
	}
	p.Total = p.Image + p.TextNoTokenEmb + p.TokenEmb + 1
	return p
}

// MACs returns the multiply-accumulate counts of a (spec §10).
func (a *Arch) MACs() MACs {
	var m MACs
	e := int64(a.EmbedDim)
	v := &a.Vision
	switch v.Kind {
	case KindViT:
		w := int64(v.Transformer.Width)
		g := int64(v.Grid())
		p := int64(v.PatchSize)
		m.Image = g*g*w*3*p*p + w*e + v.Transformer.macs(int64(v.Tokens()))
	case KindResNet:
		m.Image = v.resnetMACs(e)
	}
	t := &a.Text
	m.Text = int64(t.Transformer.Width)*e + t.Transformer.macs(int64(t.ContextLength))
	return m
}

// macs counts the blocks of a transformer run over n tokens.
func (t *Transformer) macs(n int64) int64 {
	w := int64(t.Width)
	var sum int64
	for _, b := range t.Blocks {
		if b.Heads > 0 {
			a := int64(b.Heads) * int64(t.HeadDim)
			sum += n*3*a*w + 2*n*n*a + n*a*w // in_proj, Q·Kᵀ and P·V, out_proj
		}
		sum += 2 * n * int64(b.MLP) * w // c_fc and c_proj
	}
	return sum
}

func (v *VisionArch) resnetMACs(e int64) int64 {
	conv := func(cin, cout, k, hw int64) int64 { return hw * hw * cout * cin * k * k }
	w := int64(v.Width)
	hw := int64(v.ImageSize) / 2 // stem conv1 has stride 2
	sum := conv(3, w/2, 3, hw) + conv(w/2, w/2, 3, hw) + conv(w/2, w, 3, hw)
	hw /= 2 // stem average pool
	inplanes := w
	for k, n := range v.Layers {
		planes := w << k
		for b := range n {
			stride := int64(1)
			if k > 0 && b == 0 {
				stride = 2
			}
			out := hw / stride
			sum += conv(inplanes, planes, 1, hw) + conv(planes, planes, 3, hw) + conv(planes, 4*planes, 1, out)
			if stride > 1 || inplanes != 4*planes {
				sum += conv(inplanes, 4*planes, 1, out)
			}
			inplanes = 4 * planes
			hw = out
		}
	}
	c := 32 * w
	t := hw*hw + 1
	return sum + t*3*c*c + 2*t*t*c + t*c*e
}
