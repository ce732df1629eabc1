from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from codepay_service import health, observability

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("payments.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("webhooks/", include("webhooks.urls")),
    path("healthz", health.LivenessApi.as_view(), name="healthz"),
    path("readyz", health.ReadinessApi.as_view(), name="readyz"),
    path("metrics", observability.metrics_view, name="metrics"),
]

# Unknown API paths and crashes answer in the API's error shape rather than an HTML page.
handler400 = "codepay_service.errors.bad_request_view"
handler404 = "codepay_service.errors.not_found_view"
handler500 = "codepay_service.errors.server_error_view"
