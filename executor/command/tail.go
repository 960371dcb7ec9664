package command

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// tailBuffer keeps the last max bytes written to it. It is written by one
// goroutine and read after that goroutine is done.
type tailBuffer struct {
	max     int
	buf     []byte
	written int64
}

func newTailBuffer(maxBytes int) *tailBuffer {
	return &tailBuffer{max: maxBytes}
}

// Write keeps p's end; it never fails. The buffer grows to at most twice
// max before it is compacted, so appends stay cheap.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.written += int64(len(p))
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return len(p), nil
	}
	if len(b.buf)+len(p) > 2*b.max {
		keep := b.max - len(p)
		b.buf = b.buf[:copy(b.buf, b.buf[len(b.buf)-keep:])]
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// kept returns the last max bytes, starting on a UTF-8 character boundary.
func (b *tailBuffer) kept() []byte {
	data := b.buf
	if len(data) > b.max {
		data = data[len(data)-b.max:]
	}
	if int64(len(data)) < b.written {
		for i := 0; i < utf8.UTFMax && len(data) > 0 && !utf8.RuneStart(data[0]); i++ {
			data = data[1:]
		}
	}
	return data
}

// truncated reports how many bytes String leaves out.
func (b *tailBuffer) truncated() int64 {
	return b.written - int64(len(b.kept()))
}

// String returns the kept output, headed by a note when earlier output was
// dropped.
func (b *tailBuffer) String() string {
	data := b.kept()
	if n := b.truncated(); n > 0 {
		return fmt.Sprintf("[guardian: %d earlier bytes of output dropped]\n%s", n, data)
	}
	return string(data)
}

// tail returns about the last n bytes of the output, from the start of a
// line when there is one, without surrounding white space.
func (b *tailBuffer) tail(n int) string {
	data := b.kept()
	if len(data) > n {
		data = data[len(data)-n:]
		if i := strings.IndexByte(string(data), '\n'); i >= 0 && i < len(data)-1 {
			data = data[i+1:]
		}
		for len(data) > 0 && !utf8.RuneStart(data[0]) {
			data = data[1:]
		}
	}
	return strings.TrimSpace(string(data))
}
