from django.urls import path

from . import views

app_name = "evals"
urlpatterns = [
    path("evaluations/", views.index, name="index"),
    path("evaluations/new", views.create, name="create"),
    path("evaluations/<int:pk>/", views.detail, name="detail"),
    path("evaluations/<int:pk>/progress", views.progress, name="progress"),
    path("evaluations/<int:pk>/table", views.table, name="table"),
    path("evaluations/<int:pk>/stop", views.stop, name="stop"),
    path("evaluations/<int:pk>/resume", views.resume, name="resume"),
    path("evaluations/<int:pk>/calibrate", views.calibrate, name="calibrate"),
    path("evaluations/<int:pk>/delete", views.delete, name="delete"),
    path("evaluations/<int:pk>/results.csv", views.export_csv, name="export_csv"),
    path("evaluations/<int:pk>/summary.json", views.export_json, name="export_json"),
    path("evaluations/<int:pk>/scatter.svg", views.chart, name="chart"),
    path("evaluations/<int:pk>/items/<int:item_pk>/", views.item, name="item"),
    path("evaluations/datasets/upload", views.upload, name="upload"),
    path("evaluations/datasets/<int:pk>/", views.dataset, name="dataset"),
]
