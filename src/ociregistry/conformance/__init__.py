"""An OCI distribution-spec conformance suite in pytest, for any registry URL.

It follows the four workflow categories of the official (Go) suite — pull, push, content
discovery, content management — and covers what that suite checks plus the error cases around
it, so a failure names the request and the response instead of a ginkgo spec title.

Configuration uses the official suite's environment variables:

    OCI_ROOT_URL              registry base URL, e.g. http://127.0.0.1:5000      (required)
    OCI_NAMESPACE             repository to work in, e.g. conformance/repo       (required)
    OCI_CROSSMOUNT_NAMESPACE  second repository for mount tests (default: <namespace>-crossmount-…)
    OCI_USERNAME/OCI_PASSWORD Basic credentials; a Bearer challenge is answered with a token
    OCI_AUTH_SCOPE            extra scope to ask the token service for
    OCI_DEBUG                 1: log every request and response to stderr
    OCI_TEST_PULL, OCI_TEST_PUSH, OCI_TEST_CONTENT_DISCOVERY, OCI_TEST_CONTENT_MANAGEMENT
                              if any is set, only the categories set to 1 run
    OCI_AUTOMATIC_CROSSMOUNT  1/0: also test a mount without `from` (201 / 202 expected)
    OCI_STRICT                1: the optional parts of the spec are required too (ours: yes)

Run it with `python -m ociregistry.conformance --url URL --namespace NS`, or `pytest` on this
folder with the variables set; pick categories with `-m push` etc.
"""
