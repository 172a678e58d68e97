"""`lddpm serve`: a web page to try a model (Starlette + uvicorn: `pip install 'lddpm[web]'`).

    app.py     the HTTP routes: the page, /api/info, /api/models, /api/upscale (streams
               progress), /results/
    models.py  the models offered (the shipped ones, a --checkpoint), loaded on first use
    worker.py  the one background thread that runs upscales in arrival order, cancellable
    static/    the page: index.html, app.js, style.css (plain files: no build step, no CDN)
"""
