package train

import (
	"context"
	"fmt"
	"math"

	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// Teacher is the frozen model a student distils from. It runs forward only;
// its features are constants of the loss.
type Teacher interface {
	// EncodeImages returns the L2-normalised image features [n, EmbedDim]
	// of n preprocessed images [n, 3, ImageSize, ImageSize].
	EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error)
	// EncodeTexts returns the L2-normalised text features of token rows.
	EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error)
	// EmbedDim is the width of the features.
	EmbedDim() int
	// ImageSize is the side of the input images.
	ImageSize() int
	// LogitScale is the stored logit_scale parameter (a logarithm), used
	// only when Hyper.LogitScale is 0.
	LogitScale() float32
}

// EngineTeacher runs a teacher on internal/engine (CPU, float32, no
// gradients). It is safe for concurrent use.
type EngineTeacher struct {
	m *engine.Model
}

// NewEngineTeacher wraps a built engine model as a Teacher.
func NewEngineTeacher(m *engine.Model) *EngineTeacher { return &EngineTeacher{m: m} }

// EncodeImages implements Teacher.
func (t *EngineTeacher) EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error) {
	f, err := t.m.EncodeImages(ctx, pixels, n)
	if err != nil {
		return nil, err
	}
	normalizeRows(f, t.m.EmbedDim())
	return f, nil
}

// EncodeTexts implements Teacher.
func (t *EngineTeacher) EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error) {
	f, err := t.m.EncodeTexts(ctx, ids)
	if err != nil {
		return nil, err
	}
	normalizeRows(f, t.m.EmbedDim())
	return f, nil
}

// EmbedDim implements Teacher.
func (t *EngineTeacher) EmbedDim() int { return t.m.EmbedDim() }

// ImageSize implements Teacher.
func (t *EngineTeacher) ImageSize() int { return t.m.ImageSize() }

// LogitScale implements Teacher.
func (t *EngineTeacher) LogitScale() float32 { return t.m.LogitScale() }

// normalizeRows divides each row of width w by max(‖row‖₂, 1e-12), as
// torch.nn.functional.normalize.
func normalizeRows(x []float32, w int) {
	for r := 0; r+w <= len(x); r += w {
		var s float64
		for _, v := range x[r : r+w] {
			s += float64(v) * float64(v)
		}
		n := float32(math.Max(math.Sqrt(s), 1e-12))
		for i := r; i < r+w; i++ {
			x[i] /= n
		}
	}
}

// teacherFeatures runs the teacher on one batch and checks the result sizes.
func teacherFeatures(ctx context.Context, t Teacher, images []float32, tokens [][]int, b int) ([]float32, []float32, error) {
	img, err := t.EncodeImages(ctx, images, b)
	if err != nil {
		return nil, nil, fmt.Errorf("train: teacher: %w", err)
	}
	txt, err := t.EncodeTexts(ctx, tokens)
	if err != nil {
		return nil, nil, fmt.Errorf("train: teacher: %w", err)
	}
	e := t.EmbedDim()
	if len(img) != b*e || len(txt) != b*e {
		return nil, nil, fmt.Errorf("train: teacher returned %d image and %d text values, want %d each (%d×%d)",
			len(img), len(txt), b*e, b, e)
	}
	return img, txt, nil
}
