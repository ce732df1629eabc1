"""API keys are verified from a per-process cache; a wrong secret, a revocation and a deactivated account are still
refused."""

from rest_framework.test import APIClient

from payments.models import ApiKey


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_a_cached_key_answers_without_a_query_for_it(account, api_key, django_assert_num_queries):
    """Once verified, the key costs no query: listing orders is the page's one query."""
    client = _client(api_key[1])
    assert client.get("/api/v1/orders/").status_code == 200

    with django_assert_num_queries(1):
        assert client.get("/api/v1/orders/").status_code == 200


def test_a_key_with_a_cached_prefix_and_a_wrong_secret_is_refused(account, api_key):
    """Only the whole key's hash opens the cache: the right prefix with another secret gets 401."""
    plain = api_key[1]
    assert _client(plain).get("/api/v1/orders/").status_code == 200
    prefix, _, secret = plain.partition(".")
    wrong = f"{prefix}.{'x' * len(secret)}"

    response = _client(wrong).get("/api/v1/orders/")

    assert response.status_code == 401


def test_a_key_revoked_in_this_process_is_refused_at_once(account, api_key):
    """Revoking a cached key (saved through the ORM) clears this process's cache: the next request gets 401."""
    record, plain = api_key
    assert _client(plain).get("/api/v1/orders/").status_code == 200

    record.revoked = True
    record.save()

    assert _client(plain).get("/api/v1/orders/").status_code == 401


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_time_passes(account, api_key, settings):
    """
    A revocation this process did not see (another process, or a bulk update) is refused once the entry
    is older than CODEPAY_PROCESS_CACHE_SECONDS (0 here: at once).
    """
    record, plain = api_key
    assert _client(plain).get("/api/v1/orders/").status_code == 200
    settings.CODEPAY_PROCESS_CACHE_SECONDS = 0
    ApiKey.objects.filter(pk=record.pk).update(revoked=True)

    assert _client(plain).get("/api/v1/orders/").status_code == 401
