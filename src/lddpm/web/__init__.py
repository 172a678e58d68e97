"""`lddpm serve`: a web page to try a model (Starlette + uvicorn: `pip install 'lddpm[web]'`).

    app.py     the HTTP routes: the page, /api/info, /api/upscale (streams progress), /results/
    worker.py  the one background thread that runs upscales in arrival order, cancellable
    static/    the page: index.html, app.js, style.css (plain files: no build step, no CDN)
"""
