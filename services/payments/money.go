package payments

import (
	"fmt"

	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
)

// minorDigits lists the ISO 4217 currencies whose minor unit is not a
// hundredth; every other currency is formatted with two decimals.
var minorDigits = map[string]int{
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}

// format renders m for people, for example "EUR 1500.00" or "JPY 1500".
func format(m *moneyv1.Money) string {
	digits, ok := minorDigits[m.GetCurrencyCode()]
	if !ok {
		digits = 2
	}
	units := m.GetUnitsMinor()
	sign := ""
	if units < 0 {
		sign = "-"
		units = -units // amounts are validated positive; MinInt64 cannot reach here
	}
	if digits == 0 {
		return fmt.Sprintf("%s %s%d", m.GetCurrencyCode(), sign, units)
	}
	scale := int64(1)
	for range digits {
		scale *= 10
	}
	return fmt.Sprintf("%s %s%d.%0*d", m.GetCurrencyCode(), sign, units/scale, digits, units%scale)
}
