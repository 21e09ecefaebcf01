package undo

import (
	"errors"
	"reflect"
	"testing"
)

func TestStack(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []int
	}{
		{"failure runs the steps last first", errors.New("boom"), []int{3, 2, 1}},
		{"success runs nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			func() (retErr error) {
				var u Stack
				defer u.OnError(&retErr)
				for i := 1; i <= 3; i++ {
					u.Add(func() { got = append(got, i) })
				}
				return tt.err
			}()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ran %v, want %v", got, tt.want)
			}
		})
	}
}
