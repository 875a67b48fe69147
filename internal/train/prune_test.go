package train

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// pruneInputs returns the fixture model's tensors as the student of
// fixtures/auto/prune holds them (logit_scale float32(ln 50)), its L0
// state, and the recorded deterministic masks.
func pruneInputs(t *testing.T) (*config.Arch, map[string]*tensor.Tensor, map[string]*tensor.Tensor, *Masks) {
	t.Helper()
	arch := autoArch(t)
	w, _ := readSafetensors(t, autoPath(t, "model", "teacher.safetensors.gz"))
	w["logit_scale"] = tensor.FromFloat32("logit_scale", []int{}, []float32{float32(math.Log(50))})
	raw, _ := readSafetensors(t, autoPath(t, "prune", "l0.safetensors"))
	l0, _ := fixtureL0(raw)
	z, _ := readSafetensors(t, autoPath(t, "prune", "z_eval.safetensors"))
	towers, err := l0Towers(arch)
	if err != nil {
		t.Fatal(err)
	}
	m := &Masks{}
	for i, tw := range towers {
		gm := &m.Image
		if i == 1 {
			gm = &m.Text
		}
		gm.Hidden = f32(t, z[tw.name+".hidden"])
		heads, inter := f32(t, z[tw.name+".heads"]), f32(t, z[tw.name+".intermediate"])
		for l := range tw.layers {
			gm.Heads = append(gm.Heads, heads[l*tw.heads:(l+1)*tw.heads])
			gm.MLP = append(gm.MLP, inter[l*tw.inter():(l+1)*tw.inter()])
		}
	}
	return arch, w, l0, m
}

// checkPruned compares pruned tensors with the fixture's: the same names and
// shapes, values within tol·max|ref| per tensor (0: bit-exact).
func checkPruned(t *testing.T, what string, got, want map[string]*tensor.Tensor, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d tensors, fixture %d", what, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: %s missing", what, name)
			continue
		}
		if !slices.Equal(g.Shape, w.Shape) {
			t.Errorf("%s: %s shape %v, want %v", what, name, g.Shape, w.Shape)
			continue
		}
		gv, wv := f32(t, g), f32(t, w)
		if tol == 0 {
			for i := range wv {
				if math.Float32bits(gv[i]) != math.Float32bits(wv[i]) {
					t.Errorf("%s: %s[%d] = %v, want %v (bit-exact)", what, name, i, gv[i], wv[i])
					break
				}
			}
			continue
		}
		if r := tensorRel(gv, wv); !(r <= tol) {
			t.Errorf("%s: %s: max|go-ref|/max|ref| = %.3g > %g", what, name, r, tol)
		}
	}
}

// TestPruneFixture prunes the fixture model with the recorded masks and with
// masks computed from the log-alphas (fixtures/auto/prune, README §7): the
// same tensors and shapes as the official prune(), bit-exact with the
// recorded masks and within 1e-6·max|ref| with ours; the structure of
// config.json; the engine on the exported student against the official
// features (row-relative 1e-5); the masked eval forward against the masked
// model's features; the reload into a full masked model bit-exact; and the
// reloaded model's masked forward and re-prune against their features.
func TestPruneFixture(t *testing.T) {
	ctx := context.Background()
	arch, w, l0, recorded := pruneInputs(t)
	want, meta := readSafetensors(t, autoPath(t, "prune", "pruned.safetensors.gz"))
	feats, _ := readSafetensors(t, autoPath(t, "prune", "features.safetensors"))
	images := readNpy(t, autoPath(t, "batch", "images_32.npy")).F32
	tokens := tokenRows(readNpy(t, autoPath(t, "batch", "texts.npy")))
	n := len(tokens)

	pa, got, err := Prune(arch, w, recorded)
	if err != nil {
		t.Fatal(err)
	}
	checkPruned(t, "prune with the recorded masks", got, want, 0)

	ours, err := EvalMasks(arch, l0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want []float32
	}{
		{"image hidden", ours.Image.Hidden, recorded.Image.Hidden}, {"text hidden", ours.Text.Hidden, recorded.Text.Hidden},
		{"image heads", slices.Concat(ours.Image.Heads...), slices.Concat(recorded.Image.Heads...)},
		{"text heads", slices.Concat(ours.Text.Heads...), slices.Concat(recorded.Text.Heads...)},
		{"image MLP", slices.Concat(ours.Image.MLP...), slices.Concat(recorded.Image.MLP...)},
		{"text MLP", slices.Concat(ours.Text.MLP...), slices.Concat(recorded.Text.MLP...)},
	} {
		checkAbs(t, c.what+" deterministic mask", c.got, c.want, 1e-7)
		sameSets(t, c.what+" deterministic mask", c.got, c.want, false)
	}
	pa2, got2, err := Prune(arch, w, ours)
	if err != nil {
		t.Fatal(err)
	}
	checkPruned(t, "prune with our masks", got2, want, 1e-6)
	if fmt.Sprint(pa2) != fmt.Sprint(pa) {
		t.Errorf("architectures differ: %+v vs %+v", pa2, pa)
	}

	// The structure, as config.json's auto_pruned records it.
	wantArch := readConfigArch(t, autoPath(t, "prune", "config.json"))
	if fmt.Sprint(*pa) != fmt.Sprint(*wantArch) {
		t.Errorf("pruned architecture %+v, config.json %+v", *pa, *wantArch)
	}
	if meta["config"] == "" {
		t.Error("pruned.safetensors.gz has no config metadata")
	}

	// Export, load with the engine, compare the features.
	dir := t.TempDir()
	if err := WriteModel(dir, pa, got); err != nil {
		t.Fatal(err)
	}
	la, lw := loadModelDir(t, dir)
	if fmt.Sprint(*la) != fmt.Sprint(*pa) {
		t.Errorf("reloaded export architecture %+v, want %+v", *la, *pa)
	}
	em, err := engine.Build(la, lw, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := arch.EmbedDim
	checkFeatures := func(what string, img, txt []float32, key string) {
		t.Helper()
		for _, c := range []struct {
			name string
			got  []float32
		}{{"image", img}, {"text", txt}} {
			wantF := f32(t, feats[key+"."+c.name+"_features"])
			r := rowRel(c.got, wantF, e)
			t.Logf("%s %s features: row-relative %.2g", what, c.name, r)
			if !(r <= 1e-5) {
				t.Errorf("%s %s features: row-relative error %.3g > 1e-5", what, c.name, r)
			}
			emb := slices.Clone(c.got)
			normalizeRows(emb, e)
			if r := rowRel(emb, f32(t, feats[key+"."+c.name+"_embeds"]), e); !(r <= 1e-5) {
				t.Errorf("%s %s embeddings: row-relative error %.3g > 1e-5", what, c.name, r)
			}
		}
	}
	img, err := em.EncodeImages(ctx, images, n)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := em.EncodeTexts(ctx, tokens)
	if err != nil {
		t.Fatal(err)
	}
	checkFeatures("engine on the exported student", img, txt, "pruned")

	// The masked model in eval mode (the function prune() does not keep).
	a, err := NewAutoStudent(arch, w, l0)
	if err != nil {
		t.Fatal(err)
	}
	img, err = a.EncodeImages(ctx, images, n)
	if err != nil {
		t.Fatal(err)
	}
	txt, err = a.EncodeTexts(ctx, tokens)
	if err != nil {
		t.Fatal(err)
	}
	checkFeatures("masked eval forward", img, txt, "masked_eval")
	pa3, got3, err := a.Prune()
	if err != nil {
		t.Fatal(err)
	}
	checkPruned(t, "AutoStudent.Prune", got3, want, 1e-6)
	if fmt.Sprint(*pa3) != fmt.Sprint(*pa) {
		t.Errorf("AutoStudent.Prune architecture %+v, want %+v", *pa3, *pa)
	}

	// The official reload of the pruned checkpoint into a full masked model.
	rw, rl0, err := ReloadPruned(arch, want)
	if err != nil {
		t.Fatal(err)
	}
	wantFull, _ := readSafetensors(t, autoPath(t, "prune", "reloaded_full.safetensors.gz"))
	wantTowers, wantL0 := splitL0(wantFull)
	checkPruned(t, "reloaded towers", rw, wantTowers, 0)
	checkPruned(t, "reloaded L0", rl0, wantL0, 0)
	ra, err := NewAutoStudent(arch, rw, rl0)
	if err != nil {
		t.Fatal(err)
	}
	img, err = ra.EncodeImages(ctx, images, n)
	if err != nil {
		t.Fatal(err)
	}
	txt, err = ra.EncodeTexts(ctx, tokens)
	if err != nil {
		t.Fatal(err)
	}
	checkFeatures("reloaded masked eval forward", img, txt, "reloaded_masked_eval")
	rpa, rp, err := ra.Prune()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*rpa) != fmt.Sprint(*pa) {
		t.Errorf("re-pruned architecture %+v, want %+v", *rpa, *pa)
	}
	rm, err := engine.Build(rpa, rp, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = rm.EncodeImages(ctx, images, n); err != nil {
		t.Fatal(err)
	}
	if txt, err = rm.EncodeTexts(ctx, tokens); err != nil {
		t.Fatal(err)
	}
	checkFeatures("reloaded and re-pruned", img, txt, "reloaded_repruned")

	// The masked checkpoint round trip.
	mdir := filepath.Join(t.TempDir(), "masked")
	if err := a.ExportMasked(mdir); err != nil {
		t.Fatal(err)
	}
	ma, mw, ml0, err := ReadMaskedModel(mdir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*ma) != fmt.Sprint(*arch) {
		t.Errorf("masked checkpoint architecture %+v, want %+v", *ma, *arch)
	}
	checkPruned(t, "masked checkpoint towers", mw, w, 0)
	checkPruned(t, "masked checkpoint L0", ml0, l0, 0)
}

// TestPruneErrors checks that bad inputs are refused with errors.
func TestPruneErrors(t *testing.T) {
	arch, w, l0, m := pruneInputs(t)
	short := *m
	short.Image.Hidden = short.Image.Hidden[:3]
	none := *m
	none.Text.Hidden = make([]float32, len(m.Text.Hidden))
	missing := map[string]*tensor.Tensor{}
	for k, v := range w {
		if k != "visual.proj" {
			missing[k] = v
		}
	}
	rn := readConfigArch(t, modelsPath(t, "resnet", "config.json"))
	for _, c := range []struct {
		name    string
		arch    *config.Arch
		weights map[string]*tensor.Tensor
		masks   *Masks
	}{
		{"short masks", arch, w, &short},
		{"no hidden dimension left", arch, w, &none},
		{"missing tensor", arch, missing, m},
		{"resnet", rn, w, m},
		{"nil masks", arch, w, nil},
	} {
		if _, _, err := Prune(c.arch, c.weights, c.masks); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	bad := map[string]*tensor.Tensor{}
	for k, v := range l0 {
		bad[k] = v
	}
	delete(bad, ImageL0Prefix+"heads_loga")
	if _, err := EvalMasks(arch, bad); err == nil {
		t.Error("EvalMasks without heads_loga: no error")
	}
	if _, err := NewAutoStudent(arch, w, bad); err == nil {
		t.Error("NewAutoStudent without heads_loga: no error")
	}
	bad[ImageL0Prefix+"heads_loga"] = tensor.FromFloat32("x", []int{4, 3}, make([]float32, 12))
	if _, err := EvalMasks(arch, bad); err == nil {
		t.Error("EvalMasks with a transposed heads_loga: no error")
	}
	bad[ImageL0Prefix+"heads_loga"] = l0[ImageL0Prefix+"heads_loga"]
	bad["_image_encoder.l0_module.mha_loga"] = tensor.FromFloat32("x", []int{3}, make([]float32, 3))
	if _, err := EvalMasks(arch, bad); err == nil {
		t.Error("EvalMasks with an extra mha_loga: no error")
	}
	if _, _, err := ReloadPruned(arch, map[string]*tensor.Tensor{}); err == nil {
		t.Error("ReloadPruned of nothing: no error")
	}
	big, _ := Inherit(w, arch, arch)
	big["visual.proj"] = tensor.FromFloat32("visual.proj", []int{40, 16}, make([]float32, 640))
	if _, _, err := ReloadPruned(arch, big); err == nil {
		t.Error("ReloadPruned of a tensor larger than the full one: no error")
	}
}
