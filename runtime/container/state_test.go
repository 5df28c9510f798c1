package container

import (
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "Z9", "web-1", "x_y+z.w", "0abc", strings.Repeat("a", 1024)} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "-a", ".a", "_a", "+a", "a/b", "../x", "a b", "a\x00", "é", strings.Repeat("a", 1025)} {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
}
