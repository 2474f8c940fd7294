from django.apps import AppConfig


class BalancerConfig(AppConfig):
    name = "balancer"
    verbose_name = "Director"
    default_auto_field = "django.db.models.BigAutoField"
