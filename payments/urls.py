from django.urls import path

from payments import api
from payments.events import api as events_api

urlpatterns = [
    path("orders/", api.OrderListCreateApi.as_view(), name="orders"),
    path("orders/<str:merchant_order_no>/", api.order_detail_view, name="order-detail"),
    path("orders/<str:merchant_order_no>/refunds/", api.OrderRefundCreateApi.as_view(), name="order-refunds"),
    path("orders/<str:merchant_order_no>/cancel/", api.OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<str:merchant_order_no>/capture/", api.OrderCaptureApi.as_view(), name="order-capture"),
    path("orders/<str:merchant_order_no>/increment/", api.OrderIncrementApi.as_view(), name="order-increment"),
    path("orders/<str:merchant_order_no>/tip/", api.OrderTipApi.as_view(), name="order-tip"),
    path("orders/<str:merchant_order_no>/sync/", api.OrderSyncApi.as_view(), name="order-sync"),
    path("refunds/<str:merchant_order_no>/", api.RefundDetailApi.as_view(), name="refund-detail"),
    path("batches/", api.BatchListApi.as_view(), name="batches"),
    path("batches/open/", api.BatchOpenApi.as_view(), name="batch-open"),
    path("batches/close/", api.BatchCloseApi.as_view(), name="batch-close"),
    path("event-endpoints/", events_api.EventEndpointListCreateApi.as_view(), name="event-endpoints"),
    path(
        "event-endpoints/<int:endpoint_id>/", events_api.EventEndpointDetailApi.as_view(), name="event-endpoint-detail"
    ),
    path(
        "event-endpoints/<int:endpoint_id>/rotate-secret/",
        events_api.EventEndpointRotateSecretApi.as_view(),
        name="event-endpoint-rotate-secret",
    ),
    path(
        "event-endpoints/<int:endpoint_id>/enable/",
        events_api.EventEndpointEnableApi.as_view(),
        name="event-endpoint-enable",
    ),
]
