package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// apiError is an error answered with a JSON body shaped like the OpenAI
// API's: {"error": {"message", "type", "code", "param"}}.
type apiError struct {
	status  int
	code    string // machine-readable, e.g. "invalid_image"
	param   string // the request field at fault, if any
	message string
}

func (e *apiError) Error() string { return e.message }

func errorf(status int, code, param, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, param: param, message: fmt.Sprintf(format, args...)}
}

func badRequest(code, param, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, code, param, format, args...)
}

// errorType is the OpenAI error type for a status.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	}
	return "invalid_request_error"
}

// toAPIError maps an error from decoding or encoding to a response.
func toAPIError(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body exceeds the limit of %d bytes", mbe.Limit)
	case errors.Is(err, errQueueFull):
		return errorf(http.StatusTooManyRequests, "queue_full", "", "%v", err)
	case errors.Is(err, errShuttingDown):
		return errorf(http.StatusServiceUnavailable, "shutting_down", "", "the server is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(499, "cancelled", "", "request cancelled: %v", err) // nobody reads it
	case errors.Is(err, imageproc.ErrImageTooLarge):
		return badRequest("image_too_large", "image", "%v", err)
	case errors.Is(err, imageproc.ErrUnknownFormat), errors.Is(err, imageproc.ErrCorrupt), errors.Is(err, imageproc.ErrUnsupported):
		return badRequest("invalid_image", "image", "%v", err)
	}
	return errorf(http.StatusInternalServerError, "internal_error", "", "internal error: %v", err)
}

// writeError writes err as a JSON error response.
func writeError(w http.ResponseWriter, err *apiError) {
	if err.status == http.StatusTooManyRequests || err.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if err.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tinyclip"`)
	}
	body := struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}{}
	body.Error.Message = err.message
	body.Error.Type = errorType(err.status)
	body.Error.Code = err.code
	if err.param != "" {
		body.Error.Param = &err.param
	}
	writeJSON(w, err.status, body)
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"encoding the response failed","type":"server_error","code":"internal_error","param":null}}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
