package bolt

import (
	"encoding/binary"
	"fmt"
	"io"
)

// bbolt's page format (file format version 2): a page starts with a
// 16-byte header (id, flags, count, overflow), then count 16-byte elements.
const (
	pageHeaderSize = 16
	elementSize    = 16
	branchFlag     = 0x01
	leafFlag       = 0x02
	freelistFlag   = 0x10
	bucketLeafFlag = 0x01 // a leaf element that is a nested bucket
	bucketHeader   = 16   // a nested bucket's value: root page, sequence
	metaFreelist   = pageHeaderSize + 32
	metaTxid       = pageHeaderSize + 48
)

// pageChecker reads the pages of a state file as bytes, so that a damaged
// offset or page number is found before bbolt, which turns them into
// pointers without checking, reads through them: such a pointer into
// Go's heap crashes the garbage collector, which nothing can recover.
type pageChecker struct {
	r        io.ReaderAt
	pageSize int
	hwm      uint64 // pages in use are below it
	visited  map[uint64]bool
	add      func(format string, args ...any)
}

// checkPages checks the freelist and the tree of pages under root of the
// meta page written by transaction txid.
func checkPages(r io.ReaderAt, pageSize int, hwm, root, txid uint64, add func(format string, args ...any)) error {
	c := &pageChecker{r: r, pageSize: pageSize, hwm: hwm, visited: map[uint64]bool{}, add: add}
	freelist, err := c.freelistPage(txid)
	if err != nil {
		return err
	}
	if freelist != 0 && !c.checkFreelist(freelist) {
		return nil
	}
	c.tree(root, "root", 0)
	return nil
}

// freelistPage finds the freelist's page number in the meta page of txid.
func (c *pageChecker) freelistPage(txid uint64) (uint64, error) {
	buf := make([]byte, metaTxid+8)
	for id := range int64(2) {
		if _, err := c.r.ReadAt(buf, id*int64(c.pageSize)); err != nil {
			return 0, fmt.Errorf("reading meta page %d: %w", id, err)
		}
		if binary.LittleEndian.Uint64(buf[metaTxid:]) == txid {
			fl := binary.LittleEndian.Uint64(buf[metaFreelist:])
			if fl == ^uint64(0) { // no freelist saved
				return 0, nil
			}
			return fl, nil
		}
	}
	c.add("no meta page of transaction %d", txid)
	return 0, nil
}

// page reads page id with its overflow pages, checking its header.
func (c *pageChecker) page(id uint64, what string) []byte {
	if id < 2 || id >= c.hwm {
		c.add("%s: page %d out of bounds [2, %d)", what, id, c.hwm)
		return nil
	}
	head := make([]byte, pageHeaderSize)
	if _, err := c.r.ReadAt(head, int64(id)*int64(c.pageSize)); err != nil {
		c.add("%s: page %d: %v", what, id, err)
		return nil
	}
	if got := binary.LittleEndian.Uint64(head); got != id {
		c.add("%s: page %d says it is page %d", what, id, got)
		return nil
	}
	overflow := uint64(binary.LittleEndian.Uint32(head[12:]))
	if overflow >= c.hwm-id {
		c.add("%s: page %d: %d overflow pages, past the end", what, id, overflow)
		return nil
	}
	for p := id; p <= id+overflow; p++ {
		if c.visited[p] {
			c.add("%s: page %d referenced twice", what, p)
			return nil
		}
		c.visited[p] = true
	}
	buf := make([]byte, (1+overflow)*uint64(c.pageSize))
	if _, err := c.r.ReadAt(buf, int64(id)*int64(c.pageSize)); err != nil {
		c.add("%s: page %d: %v", what, id, err)
		return nil
	}
	return buf
}

// checkFreelist checks that the freelist's ids fit its page and are below
// the high water mark.
func (c *pageChecker) checkFreelist(id uint64) bool {
	p := c.page(id, "freelist")
	if p == nil {
		return false
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags&freelistFlag == 0 {
		c.add("freelist: page %d has flags %#x", id, flags)
		return false
	}
	n, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count overflows into the first element
		n, start = binary.LittleEndian.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(p))-start)/8 {
		c.add("freelist: %d ids do not fit page %d", n, id)
		return false
	}
	for i := range n {
		if free := binary.LittleEndian.Uint64(p[start+8*i:]); free < 2 || free >= c.hwm {
			c.add("freelist: page %d out of bounds [2, %d)", free, c.hwm)
			return false
		}
	}
	return true
}

// tree checks the page id of a bucket (or a branch of it) and every page
// under it.
func (c *pageChecker) tree(id uint64, what string, depth int) {
	if depth > 64 {
		c.add("%s: pages nested too deep", what)
		return
	}
	p := c.page(id, what)
	if p != nil {
		c.elements(p, id, what, depth)
	}
}

// elements checks the elements of page p (id 0: an inline bucket's page).
func (c *pageChecker) elements(p []byte, id uint64, what string, depth int) {
	flags := binary.LittleEndian.Uint16(p[8:])
	n := int(binary.LittleEndian.Uint16(p[10:]))
	if pageHeaderSize+n*elementSize > len(p) {
		c.add("%s: page %d: %d elements do not fit", what, id, n)
		return
	}
	switch {
	case flags&branchFlag != 0 && n == 0:
		// bbolt's cursor would read the missing first element's child.
		c.add("%s: page %d: a branch page without elements", what, id)
		return
	case id == 0 && flags&leafFlag == 0:
		c.add("%s: an inline bucket whose page has flags %#x", what, flags)
		return
	}
	for i := range n {
		off := pageHeaderSize + i*elementSize
		e := p[off : off+elementSize]
		switch {
		case flags&branchFlag != 0:
			pos, ksize := int(binary.LittleEndian.Uint32(e)), int(binary.LittleEndian.Uint32(e[4:]))
			if off+pos+ksize > len(p) || pos < 0 {
				c.add("%s: page %d: element %d past the page", what, id, i)
				return
			}
			c.tree(binary.LittleEndian.Uint64(e[8:]), what, depth+1)
		case flags&leafFlag != 0:
			eflags := binary.LittleEndian.Uint32(e)
			pos, ksize, vsize := int(binary.LittleEndian.Uint32(e[4:])), int(binary.LittleEndian.Uint32(e[8:])), int(binary.LittleEndian.Uint32(e[12:]))
			if pos < 0 || ksize < 0 || vsize < 0 || off+pos+ksize+vsize > len(p) {
				c.add("%s: page %d: element %d past the page", what, id, i)
				return
			}
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			key := string(p[off+pos : off+pos+ksize])
			v := p[off+pos+ksize : off+pos+ksize+vsize]
			if len(v) < bucketHeader {
				c.add("%s/%s: bucket header of %d bytes", what, key, len(v))
				return
			}
			if root := binary.LittleEndian.Uint64(v); root != 0 {
				c.tree(root, what+"/"+key, depth+1)
			} else if inline := v[bucketHeader:]; len(inline) < pageHeaderSize {
				c.add("%s/%s: inline bucket of %d bytes", what, key, len(inline))
			} else {
				c.elements(inline, 0, what+"/"+key, depth+1)
			}
		default:
			c.add("%s: page %d has flags %#x", what, id, flags)
			return
		}
	}
}
