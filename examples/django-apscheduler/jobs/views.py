import os

from django.http import JsonResponse


def index(request):
    return JsonResponse({"pid": os.getpid(), "role": os.environ.get("WORKER_ROLE"),
                         "worker": os.environ.get("WORKER_ID"), "generation": os.environ.get("WORKER_GENERATION")})
