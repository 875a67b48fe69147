package config

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// How Check treats a tensor beyond "present with exactly this shape".
type tolerance uint8

const (
	required     tolerance = iota
	mayBeAbsent            // num_batches_tracked: a counter, unused at inference
	mayBePresent           // ln_2 of a layer without MLP: has no effect; not in TensorShapes
	scalar                 // logit_scale: shape [] or [1]
)

type tensorSpec struct {
	name  string
	shape []int
	tol   tolerance
}

// TensorShapes returns the name (open_clip form, spec §1.1) and shape of every
// tensor a checkpoint of a holds: weights, ResNet BatchNorm running statistics
// and num_batches_tracked counters (shape []), zero-size MLP tensors of
// zero-width layers, and logit_scale (shape []).
func (a *Arch) TensorShapes() map[string][]int {
	specs := a.tensorSpecs()
	m := make(map[string][]int, len(specs))
	for _, s := range specs {
		if s.tol != mayBePresent {
			m[s.name] = s.shape
		}
	}
	return m
}

func (a *Arch) tensorSpecs() []tensorSpec {
	var s []tensorSpec
	add := func(name string, shape ...int) {
		s = append(s, tensorSpec{name: name, shape: shape})
	}
	v := &a.Vision
	e := a.EmbedDim
	switch v.Kind {
	case KindViT:
		w := v.Transformer.Width
		p := v.PatchSize
		add("visual.conv1.weight", w, 3, p, p)
		add("visual.class_embedding", w)
		add("visual.positional_embedding", v.Tokens(), w)
		add("visual.ln_pre.weight", w)
		add("visual.ln_pre.bias", w)
		s = v.Transformer.appendSpecs(s, "visual.transformer.resblocks.")
		add("visual.ln_post.weight", w)
		add("visual.ln_post.bias", w)
		add("visual.proj", w, e)
	case KindResNet:
		bn := func(prefix string, c int) {
			add(prefix+".weight", c)
			add(prefix+".bias", c)
			add(prefix+".running_mean", c)
			add(prefix+".running_var", c)
			s = append(s, tensorSpec{name: prefix + ".num_batches_tracked", shape: []int{}, tol: mayBeAbsent})
		}
		w := v.Width
		add("visual.conv1.weight", w/2, 3, 3, 3)
		bn("visual.bn1", w/2)
		add("visual.conv2.weight", w/2, w/2, 3, 3)
		bn("visual.bn2", w/2)
		add("visual.conv3.weight", w, w/2, 3, 3)
		bn("visual.bn3", w)
		inplanes := w
		for k, n := range v.Layers {
			planes := w << k
			for b := range n {
				p := fmt.Sprintf("visual.layer%d.%d.", k+1, b)
				add(p+"conv1.weight", planes, inplanes, 1, 1)
				bn(p+"bn1", planes)
				add(p+"conv2.weight", planes, planes, 3, 3)
				bn(p+"bn2", planes)
				add(p+"conv3.weight", 4*planes, planes, 1, 1)
				bn(p+"bn3", 4*planes)
				if (k > 0 && b == 0) || inplanes != 4*planes {
					add(p+"downsample.0.weight", 4*planes, inplanes, 1, 1)
					bn(p+"downsample.1", 4*planes)
				}
				inplanes = 4 * planes
			}
		}
		c := 32 * w
		add("visual.attnpool.positional_embedding", v.Tokens(), c)
		for _, n := range []string{"q_proj", "k_proj", "v_proj"} {
			add("visual.attnpool."+n+".weight", c, c)
			add("visual.attnpool."+n+".bias", c)
		}
		add("visual.attnpool.c_proj.weight", e, c)
		add("visual.attnpool.c_proj.bias", e)
	}
	t := &a.Text
	w := t.Transformer.Width
	add("token_embedding.weight", t.VocabSize, w)
	add("positional_embedding", t.ContextLength, w)
	s = t.Transformer.appendSpecs(s, "transformer.resblocks.")
	add("ln_final.weight", w)
	add("ln_final.bias", w)
	add("text_projection", w, e)
	s = append(s, tensorSpec{name: "logit_scale", shape: []int{}, tol: scalar})
	return s
}

func (t *Transformer) appendSpecs(s []tensorSpec, prefix string) []tensorSpec {
	w := t.Width
	for i, b := range t.Blocks {
		p := prefix + strconv.Itoa(i) + "."
		add := func(name string, tol tolerance, shape ...int) {
			s = append(s, tensorSpec{name: p + name, shape: shape, tol: tol})
		}
		if b.Heads > 0 {
			a := b.Heads * t.HeadDim
			add("ln_1.weight", required, w)
			add("ln_1.bias", required, w)
			add("attn.in_proj_weight", required, 3*a, w)
			add("attn.in_proj_bias", required, 3*a)
			add("attn.out_proj.weight", required, w, a)
			add("attn.out_proj.bias", required, w)
		}
		ln2 := required
		if !b.HasMLP {
			ln2 = mayBePresent
		}
		add("ln_2.weight", ln2, w)
		add("ln_2.bias", ln2, w)
		if b.HasMLP {
			m := b.MLP
			add("mlp.c_fc.weight", required, m, w)
			add("mlp.c_fc.bias", required, m)
			add("mlp.c_proj.weight", required, w, m)
			add("mlp.c_proj.bias", required, w)
		}
	}
	return s
}

// ShapeError reports a tensor whose shape differs from the one the
// architecture needs.
type ShapeError struct {
	Name      string
	Got, Want []int
}

// Error returns the message, naming the tensor.
func (e *ShapeError) Error() string {
	return fmt.Sprintf("%s: shape %v, want %v", e.Name, e.Got, e.Want)
}

// MissingTensorError reports a tensor the architecture needs that the
// checkpoint lacks.
type MissingTensorError struct {
	Name string
	Want []int // the shape it should have
}

// Error returns the message, naming the tensor.
func (e *MissingTensorError) Error() string {
	return fmt.Sprintf("%s: missing tensor (want shape %v)", e.Name, e.Want)
}

// UnexpectedTensorError reports a checkpoint tensor the architecture has no
// place for.
type UnexpectedTensorError struct {
	Name  string
	Shape []int
}

// Error returns the message, naming the tensor.
func (e *UnexpectedTensorError) Error() string {
	return fmt.Sprintf("%s: unexpected tensor (shape %v)", e.Name, e.Shape)
}

// Check compares the tensor shapes of a checkpoint (open_clip names) with
// those arch needs and reports every missing, mis-shaped and unexpected
// tensor: *MissingTensorError, *ShapeError and *UnexpectedTensorError values
// joined with errors.Join, ordered by name. It accepts logit_scale as [] or
// [1], BatchNorm num_batches_tracked as [] or absent, and the (inert) ln_2
// tensors of a layer without MLP tensors.
func Check(arch *Arch, shapes map[string][]int) error {
	if arch == nil {
		return errors.New("config: no architecture to check against")
	}
	var errs []error
	known := make(map[string]bool, len(shapes))
	for _, s := range arch.tensorSpecs() {
		known[s.name] = true
		got, ok := shapes[s.name]
		if !ok {
			if s.tol == required || s.tol == scalar {
				errs = append(errs, &MissingTensorError{Name: s.name, Want: s.shape})
			}
			continue
		}
		if slices.Equal(got, s.shape) || (s.tol == scalar && slices.Equal(got, []int{1})) {
			continue
		}
		errs = append(errs, &ShapeError{Name: s.name, Got: slices.Clone(got), Want: s.shape})
	}
	for name, shape := range shapes {
		if !known[name] {
			errs = append(errs, &UnexpectedTensorError{Name: name, Shape: slices.Clone(shape)})
		}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errName(errs[i]) < errName(errs[j]) })
	return errors.Join(errs...)
}

func errName(err error) string {
	switch e := err.(type) {
	case *MissingTensorError:
		return e.Name
	case *ShapeError:
		return e.Name
	case *UnexpectedTensorError:
		return e.Name
	}
	return ""
}
