package config

import (
	"slices"
	"strings"
	"sync"
)

// Inheritance is how a TinyCLIP model's weights were inherited from its
// teacher (spec §6).
type Inheritance string

// Inheritance kinds; reference (non-TinyCLIP) models have none ("").
const (
	InheritManual Inheritance = "manual"
	InheritAuto   Inheritance = "auto"
)

// Release is one published checkpoint of a model, with the numbers the
// TinyCLIP README gives for it (spec §10). Zero values mean "not published".
type Release struct {
	Tag         string  // open_clip pretrained tag, e.g. "YFCC15M", "LAION400M", "laion2b_e16"
	Pretrain    string  // pretraining data, e.g. "LAION-400M"
	Top1        float64 // ImageNet-1k zero-shot top-1 accuracy, percent
	ReadmeGMACs float64 // the README's MACs column, in G
	PairsPerSec int     // the README's throughput column (image-text pairs per second)
	HFRepo      string  // Hugging Face repository id, "" if there is none
	File        string  // official checkpoint file name
	URL         string  // official download URL
	Note        string  // caveat about the published numbers, if any
}

// Estimate holds approximate counts of a model whose exact architecture is
// not published (the auto-inherited models): parameter counts read from the
// model name and the MACs estimate of spec §10,
// 50·image params + 77·text params (good to about 1 % for /32 models).
// These are estimates, not counts.
type Estimate struct {
	ImageParams    int64   // from the name, e.g. 63M
	TextParamsNoTE int64   // from the name, without the token embedding
	GMACs          float64 // (50·ImageParams + 77·TextParamsNoTE) / 1e9
}

// ModelInfo describes a model of the zoo (spec §1.2, §10).
type ModelInfo struct {
	Name        string      // config name, e.g. "TinyCLIP-ViT-8M-16-Text-3M"
	Inheritance Inheritance // "" for the reference models (ViT-B-32, ViT-B-16, RN50)
	// Config is the official model config; nil for the auto-inherited
	// models, whose per-layer dimensions are not published: their
	// architecture is read from the checkpoint (Resolve).
	Config *Config
	// Params and MACs are exact counts computed from Config (equal to the
	// official PyTorch models'); zero when Config is nil.
	Params Params
	MACs   MACs
	// Estimate is set, instead of Params and MACs, when Config is nil.
	Estimate *Estimate
	Releases []Release
}

// ReleaseName returns the name of release r of m as the release files and
// Hugging Face repositories spell it, e.g. "TinyCLIP-ViT-8M-16-Text-3M-YFCC15M".
func (m *ModelInfo) ReleaseName(r *Release) string { return m.Name + "-" + r.Tag }

const zooURL = "https://github.com/wkcn/TinyCLIP-model-zoo/releases/download/checkpoints/"

func vitCfg(embed, width, layers, patch, textWidth, textHeads, textLayers int) *Config {
	return &Config{
		EmbedDim:  embed,
		VisionCfg: VisionConfig{ImageSize: 224, Layers: IntOrList{layers}, Width: width, PatchSize: &patch},
		TextCfg:   TextConfig{ContextLength: 77, VocabSize: 49408, Width: textWidth, Heads: textHeads, Layers: textLayers},
	}
}

func resnetCfg(embed, width, textLayers int) *Config {
	return &Config{
		EmbedDim:  embed,
		VisionCfg: VisionConfig{ImageSize: 224, Layers: IntOrList{3, 4, 6, 3}, Width: width},
		TextCfg:   TextConfig{ContextLength: 77, VocabSize: 49408, Width: 512, Heads: 8, Layers: textLayers},
	}
}

func quick(c *Config) *Config {
	c.QuickGELU = true
	return c
}

func tinyRelease(model, tag, pretrain string, top1, gmacs float64, pairs int, hf bool) Release {
	r := Release{Tag: tag, Pretrain: pretrain, Top1: top1, ReadmeGMACs: gmacs, PairsPerSec: pairs,
		File: model + "-" + tag + ".pt"}
	r.URL = zooURL + r.File
	if hf {
		r.HFRepo = "wkcn/" + model + "-" + tag
	}
	return r
}

func autoEstimate(imageM, textM int64) *Estimate {
	e := &Estimate{ImageParams: imageM * 1e6, TextParamsNoTE: textM * 1e6}
	e.GMACs = float64(50*e.ImageParams+77*e.TextParamsNoTE) / 1e9
	return e
}

// zoo lists the models in the order of spec §10.
func zoo() []ModelInfo {
	const (
		yfcc  = "YFCC-15M"
		laion = "LAION-400M"
		ly    = "LAION+YFCC-400M"
	)
	m := func(name string, inh Inheritance, cfg *Config, rel ...Release) ModelInfo {
		return ModelInfo{Name: name, Inheritance: inh, Config: cfg, Releases: rel}
	}
	var list []ModelInfo
	add := func(mi ModelInfo) { list = append(list, mi) }

	n := "TinyCLIP-ViT-39M-16-Text-19M"
	add(m(n, InheritManual, vitCfg(512, 512, 12, 16, 512, 8, 6), tinyRelease(n, "YFCC15M", yfcc, 63.5, 9.5, 1469, true)))
	n = "TinyCLIP-ViT-8M-16-Text-3M"
	add(m(n, InheritManual, vitCfg(512, 256, 10, 16, 256, 4, 3), tinyRelease(n, "YFCC15M", yfcc, 41.1, 2.0, 4150, true)))
	n = "TinyCLIP-ResNet-30M-Text-29M"
	add(m(n, InheritManual, resnetCfg(1024, 56, 9), tinyRelease(n, "LAION400M", laion, 59.1, 6.9, 1811, false)))
	n = "TinyCLIP-ResNet-19M-Text-19M"
	add(m(n, InheritManual, resnetCfg(1024, 44, 6), tinyRelease(n, "LAION400M", laion, 56.4, 4.4, 3024, false)))
	n = "TinyCLIP-ViT-61M-32-Text-29M"
	add(m(n, InheritManual, vitCfg(512, 640, 12, 32, 512, 8, 9), tinyRelease(n, "LAION400M", laion, 62.4, 5.3, 3191, true)))
	n = "TinyCLIP-ViT-40M-32-Text-19M"
	add(m(n, InheritManual, vitCfg(512, 512, 12, 32, 512, 8, 6), tinyRelease(n, "LAION400M", laion, 59.8, 3.5, 4641, true)))

	n = "TinyCLIP-auto-ViT-63M-32-Text-31M"
	mi := m(n, InheritAuto, nil,
		tinyRelease(n, "LAION400M", laion, 63.9, 5.6, 2905, false),
		tinyRelease(n, "LAIONYFCC400M", ly, 64.5, 5.6, 2909, false))
	mi.Estimate = autoEstimate(63, 31)
	add(mi)
	n = "TinyCLIP-auto-ViT-45M-32-Text-18M"
	mi = m(n, InheritAuto, nil,
		tinyRelease(n, "LAION400M", laion, 61.4, 3.7, 3682, false),
		tinyRelease(n, "LAIONYFCC400M", ly, 62.7, 1.9, 3685, false))
	mi.Releases[1].Note = "README MACs 1.9 contradicts 3.7 for the same architecture; most likely a typo (spec §10)"
	mi.Estimate = autoEstimate(45, 18)
	add(mi)
	n = "TinyCLIP-auto-ViT-22M-32-Text-10M"
	mi = m(n, InheritAuto, nil, tinyRelease(n, "LAION400M", laion, 53.7, 1.9, 5504, false))
	mi.Estimate = autoEstimate(22, 10)
	add(mi)

	openai := Release{Tag: "openai", Pretrain: "OpenAI", Note: "OpenAI weights: QuickGELU model"}
	const laion2b = "vit_b_32-laion2b_e16-af8dbd0c.pth"
	add(m("ViT-B-32", "", vitCfg(512, 768, 12, 32, 512, 8, 12), Release{Tag: "laion2b_e16", Pretrain: "LAION-2B",
		File: laion2b, URL: "https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/" + laion2b,
		Note: "teacher of the auto-inherited models"}))
	add(m("ViT-B-32-quickgelu", "", quick(vitCfg(512, 768, 12, 32, 512, 8, 12)), openai))
	add(m("ViT-B-16", "", vitCfg(512, 768, 12, 16, 512, 8, 12)))
	add(m("ViT-B-16-quickgelu", "", quick(vitCfg(512, 768, 12, 16, 512, 8, 12)), openai))
	add(m("RN50", "", resnetCfg(1024, 64, 12)))
	add(m("RN50-quickgelu", "", quick(resnetCfg(1024, 64, 12)), openai))
	return list
}

var registry = sync.OnceValue(func() []ModelInfo {
	list := zoo()
	for i := range list {
		if list[i].Config == nil {
			continue
		}
		// The configs above are fixed; TestRegistryCounts checks that each
		// resolves and matches the spec's counts.
		if a, err := FromConfig(list[i].Config); err == nil {
			list[i].Params = a.Params()
			list[i].MACs = a.MACs()
		}
	}
	return list
})

// Models returns every model of the registry in zoo order (spec §10): the six
// manual TinyCLIP models, the three auto-inherited ones, then the reference
// CLIP models ViT-B-32, ViT-B-16 and RN50, each followed by its QuickGELU
// variant (the architecture of OpenAI's weights). The result is a copy.
func Models() []ModelInfo {
	list := registry()
	out := make([]ModelInfo, len(list))
	for i := range list {
		out[i] = list[i].clone()
	}
	return out
}

// Lookup returns the registry entry named name, ignoring case. It accepts the
// config name ("TinyCLIP-ViT-8M-16-Text-3M"), a release name (config name and
// pretrained tag: "TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"), a Hugging Face
// repository id ("wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M") and a checkpoint
// file name ("TinyCLIP-ViT-8M-16-Text-3M-YFCC15M.pt"). The result is a copy.
func Lookup(name string) (*ModelInfo, bool) {
	m, _, ok := LookupRelease(name)
	return m, ok
}

// LookupRelease is Lookup that also returns the release the name designates,
// or nil when name is a config name.
func LookupRelease(name string) (*ModelInfo, *Release, bool) {
	list := registry()
	for i := range list {
		m := &list[i]
		if strings.EqualFold(name, m.Name) {
			c := m.clone()
			return &c, nil, true
		}
		for j := range m.Releases {
			r := &m.Releases[j]
			if strings.EqualFold(name, m.ReleaseName(r)) ||
				(r.HFRepo != "" && strings.EqualFold(name, r.HFRepo)) ||
				(r.File != "" && strings.EqualFold(name, r.File)) {
				c := m.clone()
				return &c, &c.Releases[j], true
			}
		}
	}
	return nil, nil, false
}

func (m *ModelInfo) clone() ModelInfo {
	c := *m
	c.Config = m.Config.Clone()
	c.Releases = slices.Clone(m.Releases)
	if m.Estimate != nil {
		e := *m.Estimate
		c.Estimate = &e
	}
	return c
}

// Clone returns a deep copy of c (nil for nil).
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	d := *c
	d.VisionCfg.Layers = slices.Clone(c.VisionCfg.Layers)
	if c.VisionCfg.PatchSize != nil {
		p := *c.VisionCfg.PatchSize
		d.VisionCfg.PatchSize = &p
	}
	d.VisionCfg.LayerHeads = slices.Clone(c.VisionCfg.LayerHeads)
	d.VisionCfg.LayerMLP = slices.Clone(c.VisionCfg.LayerMLP)
	d.TextCfg.LayerHeads = slices.Clone(c.TextCfg.LayerHeads)
	d.TextCfg.LayerMLP = slices.Clone(c.TextCfg.LayerMLP)
	if c.AutoPruned != nil {
		ap := *c.AutoPruned
		for _, t := range []**AutoPrunedTower{&ap.Vision, &ap.Text} {
			if *t != nil {
				tt := **t
				tt.Heads = slices.Clone(tt.Heads)
				tt.MLPWidth = slices.Clone(tt.MLPWidth)
				*t = &tt
			}
		}
		d.AutoPruned = &ap
	}
	return &d
}
