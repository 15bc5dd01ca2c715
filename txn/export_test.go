package txn

// CachedSigners is how many headers v's signer cache holds (for tests).
func (v *Verifier) CachedSigners() int {
	n := 0
	for i := range v.signers.slots {
		if v.signers.slots[i].Load() != nil {
			n++
		}
	}
	return n
}
