// Package fieldfill fills and overwrites values by reflection, for tests
// that must cover every field of a type without listing them: a round trip
// through another form (the Raft log's), or a copy that must share nothing
// with its original. A field added to a type later is covered at once.
package fieldfill

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// Depth is how many times a recursive type (a Step's Undo step) is
// followed into itself.
const Depth = 3

var timeType = reflect.TypeOf(time.Time{})

// New returns a T with every field set to a distinct non-zero value, every
// map, slice and pointer it reaches non-empty. Times are in UTC with
// nanoseconds, floats have a fraction, so a conversion that drops either
// shows. Equal calls return equal values. A field the filler cannot set
// (unexported, or an interface) fails the test: it would go unchecked.
func New[T any](tb testing.TB) *T {
	tb.Helper()
	v := new(T)
	n := 0
	if err := fill(reflect.ValueOf(v).Elem(), &n, map[reflect.Type]int{}); err != nil {
		tb.Fatal(err)
	}
	return v
}

func fill(v reflect.Value, n *int, onPath map[reflect.Type]int) error {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Pointer:
		if onPath[v.Type()] >= Depth {
			return nil // a recursive type: deep enough
		}
		onPath[v.Type()]++
		defer func() { onPath[v.Type()]-- }()
		p := reflect.New(v.Type().Elem())
		if err := fill(p.Elem(), n, onPath); err != nil {
			return err
		}
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			if err := fill(s.Index(i), n, onPath); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			if err := fill(k, n, onPath); err != nil {
				return err
			}
			if err := fill(e, n, onPath); err != nil {
				return err
			}
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Unix(1_700_000_000+int64(*n), int64(*n)).UTC()))
			return nil
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				return fmt.Errorf("%s.%s: an unexported field the filler cannot set", v.Type(), f.Name)
			}
			if err := fill(v.Field(i), n, onPath); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: a kind the filler does not know (%s)", v.Type(), v.Kind())
	}
	return nil
}

// Scribble overwrites every value each of vs reaches, writing through its
// pointers, slices and maps rather than replacing them, as careless code
// would.
func Scribble(vs ...any) {
	for _, v := range vs {
		scribble(reflect.ValueOf(v))
	}
}

func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1000)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1000)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1000)
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			scribble(e) // writes through what the value points to
			v.SetMapIndex(k, e)
		}
		v.SetMapIndex(reflect.Zero(v.Type().Key()), reflect.Zero(v.Type().Elem()))
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	}
}
