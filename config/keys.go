package config

import (
	"bytes"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyPos is one key of a document and where it is.
type keyPos struct {
	key        []string
	start      int // byte offset
	line       int
	arrayTable bool // the header of an [[array of tables]]
}

// keyPositions lists the keys of the document src in the order they
// appear: table headers, and the keys of key-values in full (below their
// table, and the keys of an inline table below its own key). Keys inside
// arrays are left out: no field of Config is below an array. The decoder
// keeps positions to itself; its parser gives them.
func keyPositions(src []byte) []keyPos {
	var keys []keyPos
	var table []string
	var p unstable.Parser
	p.Reset(src)
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			k := keyOf(nil, e)
			k.arrayTable = e.Kind == unstable.ArrayTable
			keys = append(keys, k)
			table = k.key
		case unstable.KeyValue:
			keys = keyValue(keys, table, e)
		}
	}
	// Keys come in the order they start, so lines are counted in one pass.
	line, from := 1, 0
	for i := range keys {
		line += bytes.Count(src[from:keys[i].start], []byte("\n"))
		keys[i].line, from = line, keys[i].start
	}
	return keys
}

// keyValue appends the key of key-value e, below table, and those of the
// inline tables in its value.
func keyValue(keys []keyPos, table []string, e *unstable.Node) []keyPos {
	k := keyOf(table, e)
	keys = append(keys, k)
	if v := e.Value(); v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				keys = keyValue(keys, k.key, n)
			}
		}
	}
	return keys
}

// keyOf is the (possibly dotted) key of e, below parent, and where it
// starts.
func keyOf(parent []string, e *unstable.Node) keyPos {
	k := keyPos{key: slices.Clone(parent), start: -1}
	for it := e.Key(); it.Next(); {
		n := it.Node()
		k.key = append(k.key, string(n.Data))
		if k.start < 0 {
			k.start = int(n.Raw.Offset)
		}
	}
	return k
}

// firstPos returns where key, or a key below it, first appears.
func firstPos(keys []keyPos, key []string) (keyPos, bool) {
	for _, k := range keys {
		if len(k.key) >= len(key) && slices.Equal(k.key[:len(key)], key) {
			return k, true
		}
	}
	return keyPos{}, false
}

// field follows key through the toml tags of Config. It returns how many
// elements of key name fields, the type of the last of them (Config's for
// none), and whether it stopped at a name no field has, rather than at a
// field that is not a table.
func field(key []string) (n int, t reflect.Type, unknown bool) {
	t = reflect.TypeFor[Config]()
	for ; n < len(key) && t.Kind() == reflect.Struct; n++ {
		ft, ok := fieldsOf(t)[key[n]]
		if !ok {
			return n, t, true
		}
		t = ft
	}
	return n, t, false
}

// fieldsOf maps the keys of the table that struct type t is to the types
// of their fields. A key must match a tag exactly, as it always has.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("toml"), ","); name != "" && name != "-" {
			m[name] = f.Type
		}
	}
	return m
}
