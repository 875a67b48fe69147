package train

import (
	"context"
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/ml/model"
)

// Loss evaluates the step's loss on a batch without gradients and without
// changing anything: the forward passes of the teacher (in the graph for
// a GraphTeacher) and of the student (BatchNorm with batch statistics,
// running statistics kept), and the loss, as Run's first half. The
// metrics' GradNorm and ClipCoef are NaN. It serves to time the forward
// pass apart from the backward pass and the update.
func (s *Step) Loss(ctx context.Context, images []float32, tokens [][]int) (Metrics, error) {
	return s.evaluate(ctx, images, tokens, &s.lossExec, "loss", s.lossGraph)
}

// Backward evaluates the loss and the gradients on a batch, without
// changing anything and without handing the gradients out: Run's forward
// and backward passes and the global gradient norm and clipping
// coefficient, but no update (BatchNorm running statistics kept). Only the
// metrics leave the device, so that Run's time minus Backward's is the
// optimizer's (Gradients, which copies every gradient to the host, would
// count the copies instead). It serves to time the backward pass.
func (s *Step) Backward(ctx context.Context, images []float32, tokens [][]int) (Metrics, error) {
	return s.evaluate(ctx, images, tokens, &s.backExec, "backward", func(scope *model.Scope, in []*Node) []*Node {
		return s.graph(scope, in, false)[:numOutputs]
	})
}

// evaluate runs the graph that build makes (compiled into *exec on first
// use) on a batch at learning rate 0 and reads its metrics: Loss and
// Backward, which change nothing. what names the pass in errors.
func (s *Step) evaluate(ctx context.Context, images []float32, tokens [][]int, exec **model.Exec, what string, build func(*model.Scope, []*Node) []*Node) (Metrics, error) {
	m := s.emptyMetrics(0)
	in, tScale, err := s.inputs(ctx, images, tokens)
	if err != nil {
		return m, err
	}
	in = append(in, s.stepScalars(0, tScale))
	if *exec == nil {
		e, err := model.NewExec(s.st.backend, s.st.store, build)
		if err != nil {
			return m, fmt.Errorf("train: %s: %w", what, err)
		}
		*exec = e
	}
	out, err := (*exec).Call(anys(in)...)
	if err != nil {
		return m, fmt.Errorf("train: %s: %w", what, err)
	}
	if err := s.readMetrics(&m, out); err != nil {
		return m, err
	}
	if s.teacher != nil {
		m.TeacherScale = float64(tScale)
	}
	return m, nil
}

// lossGraph is the forward half of graph: the same outputs, with NaN for
// the gradient norm and the clipping coefficient.
func (s *Step) lossGraph(scope *model.Scope, in []*Node) []*Node {
	g := in[0].Graph()
	setPrecision(g, s.hyper.Precision)
	img, txt, studentS, lt := s.forwardLoss(scope, in, bnBatch)
	nan := Scalar(g, dtype, math.NaN())
	orNaN := func(x *Node) *Node {
		if x == nil {
			return nan
		}
		return x
	}
	finite := IsFinite(lt.total)
	return []*Node{lt.total, orNaN(lt.softI2T), orNaN(lt.softT2I), orNaN(lt.hard), nan, nan, studentS,
		Where(finite, ScalarOne(g, dtype), ScalarZero(g, dtype)), img, txt}
}
