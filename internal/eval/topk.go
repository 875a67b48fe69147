package eval

import "math/bits"

// TopK returns the indices of the k largest scores, largest first, exactly
// as PyTorch's CPU topk(k, largest=True, sorted=True) returns them — including
// the order of equal scores, which the official evaluation leaves to the
// implementation, and NaN ranked above every number. k is capped at
// len(scores).
//
// Exactly tied logits do occur (small or random-weight models can give
// several classes identical classifier rows); reproducing PyTorch's order
// keeps the predictions equal to the reference run's on them too. PyTorch
// (ATen's topk_impl_loop) ranks (score, index) pairs with std::partial_sort
// when 64·k <= len(scores) and otherwise with std::nth_element followed by
// std::sort of the first k−1 pairs; the functions below transcribe
// libstdc++'s versions of these algorithms (GCC's, which Linux builds of
// PyTorch use). On CUDA, as in the paper's runs, ties are ordered otherwise.
func TopK(scores []float32, k int) []int {
	n := len(scores)
	k = min(k, n)
	if k <= 0 {
		return nil
	}
	q := make([]scored, n)
	for i, s := range scores {
		q[i] = scored{s, i}
	}
	if k*64 <= n {
		partialSort(q, k)
	} else {
		nthElement(q, k-1)
		introSort(q[:k-1])
	}
	out := make([]int, k)
	for i := range out {
		out[i] = q[i].idx
	}
	return out
}

type scored struct {
	v   float32
	idx int
}

// before is PyTorch's comparator for largest=True: NaN first, then larger
// values.
func before(x, y scored) bool {
	xn, yn := x.v != x.v, y.v != y.v
	return (xn && !yn) || x.v > y.v
}

// lg is std::__lg: floor(log2(n)) for n > 0.
func lg(n int) int { return bits.Len(uint(n)) - 1 }

const sortThreshold = 16 // libstdc++ _S_threshold

func moveMedianToFirst(q []scored, result, a, b, c int) {
	switch {
	case before(q[a], q[b]):
		switch {
		case before(q[b], q[c]):
			q[result], q[b] = q[b], q[result]
		case before(q[a], q[c]):
			q[result], q[c] = q[c], q[result]
		default:
			q[result], q[a] = q[a], q[result]
		}
	case before(q[a], q[c]):
		q[result], q[a] = q[a], q[result]
	case before(q[b], q[c]):
		q[result], q[c] = q[c], q[result]
	default:
		q[result], q[b] = q[b], q[result]
	}
}

// unguardedPartition partitions q[first:last] around q[pivot].
func unguardedPartition(q []scored, first, last, pivot int) int {
	for {
		for before(q[first], q[pivot]) {
			first++
		}
		last--
		for before(q[pivot], q[last]) {
			last--
		}
		if !(first < last) {
			return first
		}
		q[first], q[last] = q[last], q[first]
		first++
	}
}

func unguardedPartitionPivot(q []scored, first, last int) int {
	mid := first + (last-first)/2
	moveMedianToFirst(q, first, first+1, mid, last-1)
	return unguardedPartition(q, first+1, last, first)
}

func insertionSort(q []scored, first, last int) {
	if first == last {
		return
	}
	for i := first + 1; i != last; i++ {
		if before(q[i], q[first]) {
			v := q[i]
			copy(q[first+1:i+1], q[first:i])
			q[first] = v
		} else {
			unguardedLinearInsert(q, i)
		}
	}
}

func unguardedLinearInsert(q []scored, last int) {
	v := q[last]
	next := last - 1
	for before(v, q[next]) {
		q[last] = q[next]
		last = next
		next--
	}
	q[last] = v
}

func finalInsertionSort(q []scored, first, last int) {
	if last-first > sortThreshold {
		insertionSort(q, first, first+sortThreshold)
		for i := first + sortThreshold; i != last; i++ {
			unguardedLinearInsert(q, i)
		}
	} else {
		insertionSort(q, first, last)
	}
}

func introsortLoop(q []scored, first, last, depth int) {
	for last-first > sortThreshold {
		if depth == 0 {
			heapSelect(q, first, last, last)
			sortHeap(q, first, last)
			return
		}
		depth--
		cut := unguardedPartitionPivot(q, first, last)
		introsortLoop(q, cut, last, depth)
		last = cut
	}
}

// introSort is std::sort.
func introSort(q []scored) {
	if len(q) == 0 {
		return
	}
	introsortLoop(q, 0, len(q), 2*lg(len(q)))
	finalInsertionSort(q, 0, len(q))
}

// nthElement is std::nth_element(q.begin(), q.begin()+nth, q.end()).
func nthElement(q []scored, nth int) {
	first, last := 0, len(q)
	if first == last || nth == last {
		return
	}
	depth := 2 * lg(last-first)
	for last-first > 3 {
		if depth == 0 {
			heapSelect(q, first, nth+1, last)
			q[first], q[nth] = q[nth], q[first]
			return
		}
		depth--
		cut := unguardedPartitionPivot(q, first, last)
		if cut <= nth {
			first = cut
		} else {
			last = cut
		}
	}
	insertionSort(q, first, last)
}

// partialSort is std::partial_sort(q.begin(), q.begin()+k, q.end()).
func partialSort(q []scored, k int) {
	heapSelect(q, 0, k, len(q))
	sortHeap(q, 0, k)
}

func heapSelect(q []scored, first, middle, last int) {
	makeHeap(q, first, middle)
	for i := middle; i < last; i++ {
		if before(q[i], q[first]) {
			popHeap(q, first, middle, i)
		}
	}
}

func pushHeap(q []scored, first, hole, top int, v scored) {
	parent := (hole - 1) / 2
	for hole > top && before(q[first+parent], v) {
		q[first+hole] = q[first+parent]
		hole = parent
		parent = (hole - 1) / 2
	}
	q[first+hole] = v
}

func adjustHeap(q []scored, first, hole, n int, v scored) {
	top := hole
	second := hole
	for second < (n-1)/2 {
		second = 2 * (second + 1)
		if before(q[first+second], q[first+second-1]) {
			second--
		}
		q[first+hole] = q[first+second]
		hole = second
	}
	if n&1 == 0 && second == (n-2)/2 {
		second = 2 * (second + 1)
		q[first+hole] = q[first+second-1]
		hole = second - 1
	}
	pushHeap(q, first, hole, top, v)
}

func popHeap(q []scored, first, last, result int) {
	v := q[result]
	q[result] = q[first]
	adjustHeap(q, first, 0, last-first, v)
}

func makeHeap(q []scored, first, last int) {
	n := last - first
	if n < 2 {
		return
	}
	for parent := (n - 2) / 2; ; parent-- {
		adjustHeap(q, first, parent, n, q[first+parent])
		if parent == 0 {
			return
		}
	}
}

func sortHeap(q []scored, first, last int) {
	for last-first > 1 {
		last--
		popHeap(q, first, last, last)
	}
}

// ArgsortDesc returns the indices of scores ordered from the largest score
// to the smallest, exactly as PyTorch's CPU torch.argsort(descending=True)
// (an unstable std::sort of (score, index) pairs) orders them, equal scores
// included, NaN first.
func ArgsortDesc(scores []float32) []int {
	q := make([]scored, len(scores))
	for i, s := range scores {
		q[i] = scored{s, i}
	}
	introSort(q)
	out := make([]int, len(q))
	for i := range q {
		out[i] = q[i].idx
	}
	return out
}
