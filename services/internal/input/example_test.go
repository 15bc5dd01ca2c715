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

func ExampleCheckID() {
	fmt.Printf("order_id: %v\n", input.CheckID(""))
	fmt.Printf("order_id: %v\n", input.CheckID(strings.Repeat("x", 200_000)))
	// Output:
	// order_id: must not be empty
	// order_id: must be at most 128 bytes, got 200000
}
