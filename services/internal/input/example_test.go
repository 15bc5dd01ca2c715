package input_test

import (
	"fmt"
	"strings"

	"github.com/trustmesh/trustmesh/services/internal/input"
)

func ExampleClip() {
	id := strings.Repeat("x", 200_000)
	fmt.Println(input.Clip(id))
	// Output: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…(200000 bytes)
}
