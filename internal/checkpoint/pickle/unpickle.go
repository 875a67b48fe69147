package pickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// Values the unpickler produces. Python None is nil, bool is bool, int is
// int64 (or *big.Int when it does not fit), float is float64, str is
// string, bytes is []byte.
type (
	// tuple is a Python tuple.
	tuple []any
	// list is a Python list (a pointer: lists are mutable and shared).
	list struct{ items []any }
	// set is a Python set or frozenset.
	set struct{ items []any }
	// dict is a Python dict or collections.OrderedDict, in insertion order.
	dict struct {
		keys, vals []any
		index      map[any]int // position of hashable keys
	}
	// global is a resolved, allow-listed global.
	global struct {
		module, name string
		kind         globalKind
		dtype        storageDType // for storage classes
	}
)

// Limits on values decoded from untrusted input.
const (
	maxIntBytes = 256 // LONG4 / text LONG: far beyond any integer torch writes
	maxProtocol = 5
)

func newDict() *dict { return &dict{index: map[any]int{}} }

// hashKey returns a comparable Go key for Python keys that are hashable
// scalars; other keys are kept in order without de-duplication.
func hashKey(k any) (any, bool) {
	switch k.(type) {
	case nil, string, int64, bool, float64:
		return k, true
	}
	return nil, false
}

func (d *dict) set(k, v any) {
	if hk, ok := hashKey(k); ok {
		if i, dup := d.index[hk]; dup {
			d.vals[i] = v
			return
		}
		d.index[hk] = len(d.keys)
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// get returns the value under a string key.
func (d *dict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// typeName describes a value for error messages without formatting it
// (values may be cyclic).
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case tuple:
		return "tuple"
	case *list:
		return "list"
	case *set:
		return "set"
	case *dict:
		return "dict"
	case *global:
		return "global " + v.module + "." + v.name
	case *storage:
		return "storage"
	case *view:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// unpickler decodes one pickle. It never calls anything: globals are
// checked against the allow-list when they are named, and the few allowed
// callables are interpreted by the unpickler itself.
type unpickler struct {
	name  string // for messages, e.g. "data.pkl"
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int64]any
	// persistentLoad resolves BINPERSID ids; nil refuses them.
	persistentLoad func(pid any) (any, error)
}

// unpickle decodes the pickle at the start of data and returns the object
// and the number of bytes it took.
func unpickle(name string, data []byte, persistentLoad func(any) (any, error)) (any, int, error) {
	u := &unpickler{name: name, data: data, memo: map[int64]any{}, persistentLoad: persistentLoad}
	v, err := u.run()
	return v, u.pos, err
}

func (u *unpickler) errf(op int, format string, args ...any) error {
	return fmt.Errorf("%w: %s: offset %d: %s", ErrFormat, u.name, op, fmt.Sprintf(format, args...))
}

func (u *unpickler) read(op, n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errf(op, "%d bytes wanted, %d left (truncated?)", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine(op int) ([]byte, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return nil, u.errf(op, "unterminated line (truncated?)")
	}
	b := u.data[u.pos : u.pos+i]
	u.pos += i + 1
	return b, nil
}

// readLen reads an n-byte little-endian length.
func (u *unpickler) readLen(op, n int) (int, error) {
	b, err := u.read(op, n)
	if err != nil {
		return 0, err
	}
	var l uint64
	switch n {
	case 1:
		l = uint64(b[0])
	case 4:
		l = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		l = binary.LittleEndian.Uint64(b)
	}
	if l > uint64(len(u.data)-u.pos) {
		return 0, u.errf(op, "length %d exceeds the %d bytes left (truncated?)", l, len(u.data)-u.pos)
	}
	return int(l), nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop(op int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf(op, "stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top(op int) (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf(op, "stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops the items above the topmost mark.
func (u *unpickler) popMark(op int) ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf(op, "no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoGet(op int, i int64) error {
	v, ok := u.memo[i]
	if !ok {
		return u.errf(op, "memo entry %d not defined", i)
	}
	u.push(v)
	return nil
}

func (u *unpickler) memoPut(op int, i int64) error {
	v, err := u.top(op)
	if err != nil {
		return err
	}
	u.memo[i] = v
	return nil
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var x uint64
		for i := len(b) - 1; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		shift := 64 - 8*uint(len(b))
		return int64(x<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}

// run executes opcodes until STOP.
func (u *unpickler) run() (any, error) {
	for {
		op := u.pos
		if u.pos >= len(u.data) {
			return nil, u.errf(op, "end of data before STOP (truncated?)")
		}
		code := u.data[u.pos]
		u.pos++
		var err error
		switch code {
		case '.': // STOP
			v, err := u.pop(op)
			if err != nil {
				return nil, err
			}
			if len(u.stack) != 0 || len(u.marks) != 0 {
				return nil, u.errf(op, "STOP with %d values and %d marks left on the stack", len(u.stack), len(u.marks))
			}
			return v, nil
		case 0x80: // PROTO
			var b []byte
			if b, err = u.read(op, 1); err == nil && b[0] > maxProtocol {
				err = u.errf(op, "unsupported pickle protocol %d", b[0])
			}
		case 0x95: // FRAME: a length hint; the frame's opcodes follow inline
			_, err = u.readLen(op, 8)
		case '(': // MARK
			u.marks = append(u.marks, len(u.stack))
		case '0': // POP
			if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
				u.marks = u.marks[:len(u.marks)-1] // pops a mark, as CPython does
			} else {
				_, err = u.pop(op)
			}
		case '1': // POP_MARK
			_, err = u.popMark(op)
		case '2': // DUP
			var v any
			if v, err = u.top(op); err == nil {
				u.push(v)
			}

		// Scalars.
		case 'N':
			u.push(nil)
		case 0x88:
			u.push(true)
		case 0x89:
			u.push(false)
		case 'K': // BININT1
			var b []byte
			if b, err = u.read(op, 1); err == nil {
				u.push(int64(b[0]))
			}
		case 'M': // BININT2
			var b []byte
			if b, err = u.read(op, 2); err == nil {
				u.push(int64(binary.LittleEndian.Uint16(b)))
			}
		case 'J': // BININT
			var b []byte
			if b, err = u.read(op, 4); err == nil {
				u.push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case 0x8a, 0x8b: // LONG1, LONG4
			n := 1
			if code == 0x8b {
				n = 4
			}
			var l int
			if l, err = u.readLen(op, n); err == nil {
				if l > maxIntBytes {
					err = u.errf(op, "integer of %d bytes is too large", l)
					break
				}
				b, _ := u.read(op, l)
				u.push(decodeLong(b))
			}
		case 'I', 'L': // INT, LONG (text)
			var b []byte
			if b, err = u.readLine(op); err != nil {
				break
			}
			s := string(b)
			if code == 'L' && len(s) > 0 && s[len(s)-1] == 'L' {
				s = s[:len(s)-1]
			}
			if code == 'I' && (s == "00" || s == "01") {
				u.push(s == "01")
				break
			}
			if len(s) > maxIntBytes {
				err = u.errf(op, "integer of %d digits is too large", len(s))
				break
			}
			if x, perr := strconv.ParseInt(s, 10, 64); perr == nil {
				u.push(x)
			} else if n, ok := new(big.Int).SetString(s, 10); ok {
				u.push(n)
			} else {
				err = u.errf(op, "bad integer %q", s)
			}
		case 'G': // BINFLOAT
			var b []byte
			if b, err = u.read(op, 8); err == nil {
				u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case 'F': // FLOAT (text)
			var b []byte
			if b, err = u.readLine(op); err == nil {
				x, perr := strconv.ParseFloat(string(b), 64)
				if perr != nil {
					err = u.errf(op, "bad float %q", b)
				} else {
					u.push(x)
				}
			}

		// Strings and bytes.
		case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			n := map[byte]int{'X': 4, 0x8c: 1, 0x8d: 8}[code]
			var l int
			if l, err = u.readLen(op, n); err == nil {
				b, _ := u.read(op, l)
				if !utf8.Valid(b) {
					err = u.errf(op, "string is not valid UTF-8")
				} else {
					u.push(string(b))
				}
			}
		case 'T', 'U': // BINSTRING, SHORT_BINSTRING (Python 2 str)
			n := 4
			if code == 'U' {
				n = 1
			}
			var l int
			if l, err = u.readLen(op, n); err == nil {
				b, _ := u.read(op, l)
				u.push(string(b))
			}
		case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
			n := map[byte]int{'B': 4, 'C': 1, 0x8e: 8, 0x96: 8}[code]
			var l int
			if l, err = u.readLen(op, n); err == nil {
				b, _ := u.read(op, l)
				u.push(append([]byte(nil), b...))
			}

		// Containers.
		case ')': // EMPTY_TUPLE
			u.push(tuple{})
		case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
			n := int(code - 0x84)
			if len(u.stack) < n || (len(u.marks) > 0 && len(u.stack)-n < u.marks[len(u.marks)-1]) {
				err = u.errf(op, "stack underflow")
				break
			}
			t := append(tuple(nil), u.stack[len(u.stack)-n:]...)
			u.stack = append(u.stack[:len(u.stack)-n], t)
		case 't': // TUPLE
			var items []any
			if items, err = u.popMark(op); err == nil {
				u.push(tuple(items))
			}
		case ']': // EMPTY_LIST
			u.push(&list{})
		case 'l': // LIST
			var items []any
			if items, err = u.popMark(op); err == nil {
				u.push(&list{items: items})
			}
		case 'a': // APPEND
			var v, t any
			if v, err = u.pop(op); err != nil {
				break
			}
			if t, err = u.top(op); err != nil {
				break
			}
			l, ok := t.(*list)
			if !ok {
				err = u.errf(op, "APPEND to a %s", typeName(t))
				break
			}
			l.items = append(l.items, v)
		case 'e': // APPENDS
			var items []any
			if items, err = u.popMark(op); err != nil {
				break
			}
			var t any
			if t, err = u.top(op); err != nil {
				break
			}
			l, ok := t.(*list)
			if !ok {
				err = u.errf(op, "APPENDS to a %s", typeName(t))
				break
			}
			l.items = append(l.items, items...)
		case '}': // EMPTY_DICT
			u.push(newDict())
		case 'd': // DICT
			var items []any
			if items, err = u.popMark(op); err != nil {
				break
			}
			if len(items)%2 != 0 {
				err = u.errf(op, "DICT with an odd number of items")
				break
			}
			d := newDict()
			for i := 0; i < len(items); i += 2 {
				d.set(items[i], items[i+1])
			}
			u.push(d)
		case 's': // SETITEM
			var k, v, t any
			if v, err = u.pop(op); err != nil {
				break
			}
			if k, err = u.pop(op); err != nil {
				break
			}
			if t, err = u.top(op); err != nil {
				break
			}
			d, ok := t.(*dict)
			if !ok {
				err = u.errf(op, "SETITEM on a %s", typeName(t))
				break
			}
			d.set(k, v)
		case 'u': // SETITEMS
			var items []any
			if items, err = u.popMark(op); err != nil {
				break
			}
			var t any
			if t, err = u.top(op); err != nil {
				break
			}
			d, ok := t.(*dict)
			if !ok || len(items)%2 != 0 {
				err = u.errf(op, "SETITEMS with %d items on a %s", len(items), typeName(t))
				break
			}
			for i := 0; i < len(items); i += 2 {
				d.set(items[i], items[i+1])
			}
		case 0x8f: // EMPTY_SET
			u.push(&set{})
		case 0x90: // ADDITEMS
			var items []any
			if items, err = u.popMark(op); err != nil {
				break
			}
			var t any
			if t, err = u.top(op); err != nil {
				break
			}
			s, ok := t.(*set)
			if !ok {
				err = u.errf(op, "ADDITEMS on a %s", typeName(t))
				break
			}
			s.items = append(s.items, items...)
		case 0x91: // FROZENSET
			var items []any
			if items, err = u.popMark(op); err == nil {
				u.push(&set{items: items})
			}

		// Memo.
		case 'h': // BINGET
			var b []byte
			if b, err = u.read(op, 1); err == nil {
				err = u.memoGet(op, int64(b[0]))
			}
		case 'j': // LONG_BINGET
			var b []byte
			if b, err = u.read(op, 4); err == nil {
				err = u.memoGet(op, int64(binary.LittleEndian.Uint32(b)))
			}
		case 'q': // BINPUT
			var b []byte
			if b, err = u.read(op, 1); err == nil {
				err = u.memoPut(op, int64(b[0]))
			}
		case 'r': // LONG_BINPUT
			var b []byte
			if b, err = u.read(op, 4); err == nil {
				err = u.memoPut(op, int64(binary.LittleEndian.Uint32(b)))
			}
		case 0x94: // MEMOIZE
			err = u.memoPut(op, int64(len(u.memo)))
		case 'g', 'p': // GET, PUT (text index)
			var b []byte
			if b, err = u.readLine(op); err != nil {
				break
			}
			i, perr := strconv.ParseInt(string(b), 10, 64)
			if perr != nil {
				err = u.errf(op, "bad memo index %q", b)
			} else if code == 'g' {
				err = u.memoGet(op, i)
			} else {
				err = u.memoPut(op, i)
			}

		// Globals and calls.
		case 'c': // GLOBAL
			var mod, name []byte
			if mod, err = u.readLine(op); err != nil {
				break
			}
			if name, err = u.readLine(op); err != nil {
				break
			}
			err = u.pushGlobal(op, string(mod), string(name))
		case 0x93: // STACK_GLOBAL
			var m, n any
			if n, err = u.pop(op); err != nil {
				break
			}
			if m, err = u.pop(op); err != nil {
				break
			}
			ms, ok1 := m.(string)
			ns, ok2 := n.(string)
			if !ok1 || !ok2 {
				err = u.errf(op, "STACK_GLOBAL with %s and %s, want two strings", typeName(m), typeName(n))
				break
			}
			err = u.pushGlobal(op, ms, ns)
		case 'R': // REDUCE
			var f, a any
			if a, err = u.pop(op); err != nil {
				break
			}
			if f, err = u.pop(op); err != nil {
				break
			}
			args, ok := a.(tuple)
			if !ok {
				err = u.errf(op, "REDUCE with %s arguments, want a tuple", typeName(a))
				break
			}
			var v any
			if v, err = u.call(op, f, args); err == nil {
				u.push(v)
			}
		case 0x81, 0x92: // NEWOBJ, NEWOBJ_EX: cls.__new__(cls, *args)
			if code == 0x92 {
				if _, err = u.pop(op); err != nil { // kwargs
					break
				}
			}
			var c any
			if _, err = u.pop(op); err != nil { // args
				break
			}
			if c, err = u.pop(op); err != nil {
				break
			}
			if g, ok := c.(*global); !ok || g.kind != kindOrderedDict {
				err = u.errf(op, "NEWOBJ of %s", typeName(c))
				break
			}
			u.push(newDict())
		case 'b': // BUILD
			var state, t any
			if state, err = u.pop(op); err != nil {
				break
			}
			if t, err = u.top(op); err != nil {
				break
			}
			err = u.build(op, t, state)
		case 'Q': // BINPERSID
			var pid any
			if pid, err = u.pop(op); err != nil {
				break
			}
			if u.persistentLoad == nil {
				err = u.errf(op, "persistent id in a pickle that allows none")
				break
			}
			var v any
			if v, err = u.persistentLoad(pid); err != nil {
				err = fmt.Errorf("%s: offset %d: %w", u.name, op, err)
			} else {
				u.push(v)
			}

		// Recognised but refused.
		case 0x82, 0x83, 0x84: // EXT1, EXT2, EXT4
			err = &GlobalError{Module: "copyreg", Name: "extension registry", File: u.name, Offset: op}
		case 'P', 'i', 'o', 'S', 'V': // PERSID, INST, OBJ, STRING, UNICODE (protocol 0)
			err = u.errf(op, "protocol-0 opcode %q is not supported", code)
		case 0x97, 0x98: // NEXT_BUFFER, READONLY_BUFFER
			err = u.errf(op, "out-of-band buffers are not supported")
		default:
			err = u.errf(op, "unknown opcode 0x%02x", code)
		}
		if err != nil {
			return nil, err
		}
	}
}

// pushGlobal resolves an allow-listed global or refuses it.
func (u *unpickler) pushGlobal(op int, module, name string) error {
	g, ok := lookupGlobal(module, name)
	if !ok {
		return &GlobalError{Module: module, Name: name, File: u.name, Offset: op, Key: u.buildingKey()}
	}
	u.push(g)
	return nil
}

// buildingKey names the top-level dict entry whose value is being built, if
// the pickle's outermost object is a dict: the key is the last string at an
// even position of the dict's first item frame.
func (u *unpickler) buildingKey() string {
	if len(u.stack) == 0 {
		return ""
	}
	if _, ok := u.stack[0].(*dict); !ok {
		return ""
	}
	start, end := 1, len(u.stack)
	switch {
	case len(u.marks) > 0 && u.marks[0] == 1:
		if len(u.marks) > 1 {
			end = u.marks[1]
		}
	case len(u.marks) > 0:
		end = u.marks[0]
	}
	if end <= start {
		return ""
	}
	frame := u.stack[start:end]
	k, _ := frame[(len(frame)-1)&^1].(string)
	return k
}

// build applies BUILD(state) to t. Only dicts accept a state (the
// "_metadata" attribute torch attaches to state dicts); it is ignored.
func (u *unpickler) build(op int, t, state any) error {
	if _, ok := t.(*dict); ok {
		switch state.(type) {
		case nil, *dict, tuple:
			return nil
		}
	}
	return u.errf(op, "BUILD of a %s with a %s state", typeName(t), typeName(state))
}
