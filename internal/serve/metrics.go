package serve

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec   // handler, code
	latency   *prometheus.HistogramVec // handler
	inflight  prometheus.Gauge
	batchSize *prometheus.HistogramVec // kind
	batchTime *prometheus.HistogramVec // kind
	queueWait *prometheus.HistogramVec // kind
	items     *prometheus.CounterVec   // kind
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tinyclip_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"handler", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tinyclip_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"handler"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tinyclip_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tinyclip_batch_size", Help: "Items per engine call, by input kind (text, image).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}, []string{"kind"}),
		batchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tinyclip_batch_duration_seconds", Help: "Engine call duration, by input kind.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tinyclip_queue_wait_seconds", Help: "Longest wait of a request in a batch before the engine call, by input kind.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"kind"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tinyclip_encoded_items_total", Help: "Texts and images encoded.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.latency, m.inflight, m.batchSize, m.batchTime, m.queueWait, m.items)
	return m
}

// queue registers the queue-depth gauges.
func (m *metrics) queue(texts, images func() int64) {
	for kind, f := range map[string]func() int64{"text": texts, "image": images} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tinyclip_queue_depth", Help: "Items accepted and not yet encoded, by input kind.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(f()) }))
	}
}

func (m *metrics) batch(kind string, size int, wait, run time.Duration) {
	m.batchSize.WithLabelValues(kind).Observe(float64(size))
	m.batchTime.WithLabelValues(kind).Observe(run.Seconds())
	m.queueWait.WithLabelValues(kind).Observe(wait.Seconds())
	m.items.WithLabelValues(kind).Add(float64(size))
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
