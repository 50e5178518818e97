package factors

// AddressEnroller is an Enroller whose enrolment starts from an address
// the person types (EnrollRequest.Address: a phone number): the security
// page then shows a form for it. AddressInput is the HTML input type of
// that field ("tel", "email").
type AddressEnroller interface {
	Enroller
	AddressInput() string
}
