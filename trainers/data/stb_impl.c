/* The stb image libraries, compiled here from Debian's headers (libstb-dev) rather than linked from
   its prebuilt libstb: so they are built with our flags (sanitizers and fuzzing coverage reach
   inside the decoders), and so the decoder holds only the formats we accept (PNG, JPEG, BMP, TGA,
   GIF, PNM): stbi_load guesses the format from the bytes, so every compiled-in decoder (PSD, HDR,
   PIC, ...) would otherwise be reachable from any file named .png. Files are read into memory by
   our own code (nn::read_file, with a size limit), hence no stdio. The
   image size limits are checked in image.cpp, from the header, before decoding (stb's own
   STBI_MAX_DIMENSIONS stays at its default, larger, so that its header parser reports the real
   size for our error message instead of failing as "unknown image type"). */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#include <stb_image.h>

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>
