package search

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath returns the Chromium binary: $TINYCLIP_CHROMIUM, else
// /usr/bin/chromium or chromium on $PATH. Without one the test is skipped,
// unless TINYCLIP_REQUIRE_CHROMIUM is set (CI sets it), which fails it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TINYCLIP_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("TINYCLIP_REQUIRE_CHROMIUM") != "" {
		t.Fatal("Chromium not found and TINYCLIP_REQUIRE_CHROMIUM is set: install Debian's chromium package (.ci/run does)")
	}
	t.Skip("Chromium not found (apt-get install chromium); set TINYCLIP_REQUIRE_CHROMIUM=1 to make this a failure")
	return ""
}

// TestWebPageInChromium loads the search page in headless Chromium, types a
// query, and checks that the results render with their thumbnails; then it
// searches by uploading an image. The index holds the four fixture images
// under the resnet fixture model, whose official outputs rank a_square.png
// first for "a dog" (see fixture_test.go).
func TestWebPageInChromium(t *testing.T) {
	chrome := chromiumPath(t)
	dir, images, _ := fixtureInputs(t)
	m := loadFixtureModel(t, "resnet", "tinyclip_bf16.pt")
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Index(context.Background(), m, dir, IndexOptions{Model: "resnet-fixture"}); err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(context.Background(), db, m, HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // 127.0.0.1 only
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1024),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Any uncaught JavaScript exception fails the test.
	var jsMu sync.Mutex
	var jsErrors []string
	exceptions := chromedp.Events(bctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return // the browser context ended
			}
			msg := ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			jsMu.Lock()
			jsErrors = append(jsErrors, msg)
			jsMu.Unlock()
		}
	}()
	jsErrs := func() []string {
		jsMu.Lock()
		defer jsMu.Unlock()
		return append([]string(nil), jsErrors...)
	}

	// allRendered is true once n result figures show thumbnails that
	// loaded (complete, with a decoded width).
	allRendered := func(n int) string {
		return fmt.Sprintf(`(() => {
			const imgs = [...document.querySelectorAll('#results figure.hit img')];
			return imgs.length === %d && imgs.every(i => i.complete && i.naturalWidth > 0);
		})()`, n)
	}
	type hit struct {
		Path  string `json:"path"`
		Score string `json:"score"`
		Shown string `json:"shown"`
		W     int    `json:"w"`
		H     int    `json:"h"`
	}
	readHits := chromedp.Evaluate[[]hit](`[...document.querySelectorAll('#results figure.hit')].map(f => ({
		path: f.dataset.path,
		score: f.querySelector('.score').textContent,
		shown: f.querySelector('.name').textContent,
		w: f.querySelector('img').naturalWidth,
		h: f.querySelector('img').naturalHeight,
	}))`)
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			return chromedp.Void{}, err
		}
	}

	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("q")),
		poll(`document.getElementById('info').textContent.includes('4 images')`),
	)
	if err != nil {
		t.Fatalf("loading the page: %v (JS errors: %v)", err, jsErrs())
	}
	info, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("info")))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.ID("q"), "a dog"),
		chromedp.Click(chromedp.ID("go")),
		poll(allRendered(len(images))),
	)
	if err != nil {
		t.Fatalf("text search in the page: %v (JS errors: %v)", err, jsErrs())
	}
	status, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("status")))
	if err != nil {
		t.Fatal(err)
	}
	hits, err := chromedp.Run(bctx, readHits)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "resnet-fixture") {
		t.Errorf("page header %q lacks the model name", info)
	}
	if !strings.HasPrefix(status, "4 results") {
		t.Errorf("status %q", status)
	}
	if len(hits) != 4 || filepath.Base(hits[0].Path) != "a_square.png" || hits[0].Shown != "a_square.png" {
		t.Fatalf("results %+v, want a_square.png first", hits)
	}
	// Thumbnails are the images scaled to 256 on the longer side.
	thumb := map[string][2]int{"a_square.png": {256, 256}, "b_wide.png": {256, 153}, "c_tall.jpg": {147, 256}, "d_square.jpg": {256, 256}}
	for _, h := range hits {
		if want := thumb[filepath.Base(h.Path)]; h.W != want[0] || h.H != want[1] {
			t.Errorf("%s: thumbnail %dx%d, want %dx%d", h.Path, h.W, h.H, want[0], want[1])
		}
	}

	// Search by image: choose a file in the upload field.
	query := filepath.Join(dir, "c_tall.jpg")
	err = chromedp.Do(bctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('q').value = ''`),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{query}),
		poll(`(() => { const f = document.querySelector('#results figure.hit');
			return !!f && f.dataset.path.endsWith('c_tall.jpg'); })()`),
		poll(allRendered(len(images))),
	)
	if err != nil {
		t.Fatalf("image search in the page: %v (JS errors: %v)", err, jsErrs())
	}
	if hits, err = chromedp.Run(bctx, readHits); err != nil {
		t.Fatal(err)
	}
	if hits[0].Score != "1.000" {
		t.Errorf("image query: first result %+v, want c_tall.jpg with score 1.000", hits[0])
	}
	if shot := os.Getenv("TINYCLIP_SCREENSHOT"); shot != "" {
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(shot, png, 0o644)
		}
	}
	if errs := jsErrs(); len(errs) > 0 {
		t.Errorf("JavaScript exceptions: %v", errs)
	}
}
